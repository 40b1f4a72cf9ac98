"""Check manual_grad against jax.grad and finite differences for the configured network.

    python experiments/gradcheck.py model.hidden=[3,3,3]

Prints one row per layer and leaf; exits 1 when any check fails.
"""

import hydra
from omegaconf import DictConfig

import deltaprop.io.config
from deltaprop.io.xla_cache import enable_compilation_cache
from deltaprop.run.setup import gradcheck_from_config


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    deltaprop.io.config.validate_config(cfg)
    report = gradcheck_from_config(cfg)
    print(report.format_table())
    if not report.passed:
        raise SystemExit(1)


if __name__ == "__main__":
    enable_compilation_cache()
    main()
