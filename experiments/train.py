"""Train a sigmoid/BCE network: the main job.

    python experiments/train.py                                     # the defaults in conf/
    python experiments/train.py model.hidden=[32,32] optimizer=adam
    python experiments/train.py trainer.num_seeds=4 'sweep.lr=[0.1,1.0]'   # 8 members, one program
    python experiments/train.py -m optimizer.lr=0.01,0.1,1.0 seed=0,1   # a Hydra sweep: six runs

Exit codes (deltaprop.errors): 0 done, 2 bad input, 3 every member diverged, 130 interrupted.
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import deltaprop
import deltaprop.io.config  # registers the structured config schema
from deltaprop.errors import EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED, InputError
from deltaprop.io.xla_cache import enable_compilation_cache
from deltaprop.nan_guard import TrainingDiverged


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        metrics = deltaprop.train(cfg)
    except (InputError, TrainingDiverged) as error:
        print(f"error: {error}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # let Hydra mark this job failed and go on with the others
        sys.exit(EXIT_BAD_INPUT if isinstance(error, InputError) else EXIT_DIVERGED)
    except KeyboardInterrupt as error:
        print(f"{error or 'interrupted'}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    return metrics[cfg.objective]


if __name__ == "__main__":
    enable_compilation_cache()
    main()
