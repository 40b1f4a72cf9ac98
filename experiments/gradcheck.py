"""Check manual_grad against jax.grad and finite differences for the configured network.

    python experiments/gradcheck.py model.hidden=[3,3,3]

Prints one row per layer and leaf. Exit codes: 0 every check passed, 2 bad input, 4 a check failed.
"""

import sys

import hydra
from omegaconf import DictConfig

import deltaprop.io.config
from deltaprop.errors import EXIT_BAD_INPUT, EXIT_GRADCHECK_FAILED, InputError
from deltaprop.io.xla_cache import enable_compilation_cache
from deltaprop.run.setup import gradcheck_from_config


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        deltaprop.io.config.validate_config(cfg)
        report = gradcheck_from_config(cfg)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    print(report.format_table())
    if not report.passed:
        sys.exit(EXIT_GRADCHECK_FAILED)


if __name__ == "__main__":
    enable_compilation_cache()
    main()
