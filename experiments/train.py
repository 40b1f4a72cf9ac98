"""Train a sigmoid/BCE network: the main job.

    python experiments/train.py                                     # the defaults in conf/
    python experiments/train.py model.hidden=[32,32] optimizer=adam
    python experiments/train.py trainer.num_seeds=4 'sweep.lr=[0.1,1.0]'   # 8 members, one program
    python experiments/train.py -m optimizer.lr=0.01,0.1,1.0 seed=0,1   # a Hydra sweep: six runs
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import deltaprop
import deltaprop.io.config
from deltaprop.io.xla_cache import enable_compilation_cache
from deltaprop.nan_guard import TrainingDiverged


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        metrics = deltaprop.train(cfg)
    except (ValueError, TrainingDiverged) as error:
        # ValueError: bad config, data or checkpoint, found before any work (exit 2);
        # TrainingDiverged: every member's loss became NaN/inf, last good checkpoint kept (exit 3).
        print(f"error: {error}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # let Hydra mark this job failed and go on with the others
        sys.exit(2 if isinstance(error, ValueError) else 3)
    return metrics[cfg.objective]


if __name__ == "__main__":
    enable_compilation_cache()
    main()
