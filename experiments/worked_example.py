"""The textbook example, step by step: every z_l, a_l, δ_l, ∂L/∂W_l, ∂L/∂b_l and one update.

    python experiments/worked_example.py                          # experiment=worked_example
    python experiments/worked_example.py worked_example.batch=8 optimizer.lr=0.1
    python experiments/worked_example.py experiment=vanishing_gradients worked_example.batch=2

The primary config `worked_example_app`, registered below, is conf/config.yaml with
`override experiment: worked_example` in its defaults list: the experiment applies unless the
command line names another one. `worked_example.batch` (default 4) is how many training examples
are shown. Prints the layers from the output layer down to layer 2, writes the same as
`worked_example.md` into the Hydra run directory, and exits 1 when a check against jax.grad fails
or the loss does not fall (2 on bad input).
"""

import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

import deltaprop.io.config
from deltaprop.io.xla_cache import enable_compilation_cache
from deltaprop.run.setup import worked_example_inputs
from deltaprop.teaching.render import format_console, format_markdown
from deltaprop.teaching.worked_example import DEFAULT_BATCH, worked_example

ConfigStore.instance().store(
    name="worked_example_app",
    node={"defaults": ["config", {"override experiment": "worked_example"}, "_self_"]},
)


@hydra.main(version_base="1.3", config_path="../conf", config_name="worked_example_app")
def main(cfg: DictConfig) -> None:
    try:
        deltaprop.io.config.validate_config(cfg)
        batch = OmegaConf.select(cfg, "worked_example.batch", default=DEFAULT_BATCH)
        params, x, y = worked_example_inputs(cfg, batch)
    except ValueError as error:  # ConfigError, DataError, a bad batch: found before any work
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    example = worked_example(params, x, y, cfg.optimizer.lr)
    print(format_console(example))
    report = Path(HydraConfig.get().runtime.output_dir) / "worked_example.md"
    report.write_text(format_markdown(example), encoding="utf-8")
    print(f"\nreport: {report}")
    if not example.passed:
        sys.exit(1)


if __name__ == "__main__":
    enable_compilation_cache()
    main()
