"""Check manual_grad against jax.grad and finite differences for the configured network.

    python experiments/gradcheck.py model.hidden=[3,3,3]

Prints one row per layer and leaf; exits 1 when any check fails.
"""

import jax

jax.config.update("jax_enable_x64", True)  # before any array exists

import hydra
from omegaconf import DictConfig

import deltaprop.config  # noqa: F401  (registers the structured config schema)
from deltaprop.trainer import run_gradcheck
from deltaprop.xla_cache import enable_compilation_cache


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    report = run_gradcheck(cfg)
    print(report.format_table())
    if not report.passed:
        raise SystemExit(1)


if __name__ == "__main__":
    enable_compilation_cache()
    main()
