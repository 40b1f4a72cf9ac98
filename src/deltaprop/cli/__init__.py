"""The console commands: thin Hydra apps on the packaged configs (`deltaprop.conf`, the project's
conf/), installed by `pip install .` and called by experiments/*.py.

    deltaprop-train               train a run or a sweep
    deltaprop-gradcheck           manual_grad against jax.grad and finite differences
    deltaprop-worked-example      every number of one step
    deltaprop-predict             a trained model on new data
    deltaprop-gather              join the blocks of a sweep
    deltaprop-speed-of-learning   Nielsen's ‖∂C/∂b^l‖ per hidden layer
    deltaprop-learning-slowdown   Nielsen's one neuron, quadratic cost against cross-entropy
    deltaprop-vanishing-gradients ‖δ_l‖ per layer from epoch 0, one sweep per activation

Each command body reads its config once (run/config.read) and hands plain settings to the
library; teaching commands live in cli/teaching.py. Nothing here imports JAX at import time.
Exit codes (deltaprop.errors): 0 done, 2 bad input, 3 every member diverged, 4 a gradient check
failed, 130 interrupted. Each command also accepts the `--key=value` form a W&B sweep agent
passes (`${args}`): it becomes Hydra's `key=value`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from deltaprop.errors import (
    EXIT_BAD_INPUT,
    EXIT_DIVERGED,
    EXIT_INTERRUPTED,
    InputError,
    TrainingDiverged,
)
from deltaprop.run import config as _config  # noqa: F401  (registers the schema with Hydra)

log = logging.getLogger(__name__)
PACKAGED_CONF = "pkg://deltaprop.conf"
# Hydra's own long options: never translated (`--config-name=x` stays a flag).
HYDRA_FLAGS = {
    "--help", "--hydra-help", "--version", "--cfg", "--package", "--resolve", "--info",
    "--config-path", "--config-dir", "--config-name", "--experimental-rerun", "--multirun",
    "--shell-completion",
}


def hydra_overrides(argv: list[str]) -> list[str]:
    """`--optimizer.lr=0.1` (a W&B sweep agent's `${args}`) -> `optimizer.lr=0.1`; Hydra's flags
    and every other argument as they are."""

    def translated(arg: str) -> str:
        if arg.startswith("--") and "=" in arg and arg.split("=", 1)[0] not in HYDRA_FLAGS:
            return arg[2:]
        return arg

    return [translated(arg) for arg in argv]


def hydra_app(task: Callable[[DictConfig], object], job_name: str, config_name: str = "config"):
    """A console command running `task(cfg)` as Hydra's app `job_name` (its log file is
    `<run dir>/<job_name>.log`); `config_path` lets experiments/*.py use a checkout's conf/."""

    def command(config_path: str = PACKAGED_CONF) -> None:
        from deltaprop.io.xla_cache import enable_compilation_cache

        named = any(arg.startswith("hydra.job.name=") for arg in sys.argv[1:])
        sys.argv[1:] = hydra_overrides(sys.argv[1:]) + ([] if named else
                                                         [f"hydra.job.name={job_name}"])
        enable_compilation_cache()
        hydra.main(version_base="1.3", config_path=config_path, config_name=config_name)(task)()

    return command


def fail(error: BaseException | str, code: int) -> None:
    """One line on stderr, the exit code; no traceback."""
    print(f"error: {error}", file=sys.stderr)
    sys.exit(code)


def failing_cleanly(body: Callable[[DictConfig], object]) -> Callable[[DictConfig], object]:
    """`body(cfg)`, with bad input (exit 2), a diverged run (3) and Ctrl-C (130) each one line on
    stderr. In a multirun the job fails and Hydra goes on (a search skips the trial)."""
    def task(cfg: DictConfig):
        try:
            return body(cfg)
        except (InputError, TrainingDiverged) as error:
            if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
                log.error(str(error))  # "error: ..." on the console and in the job's log
                raise  # Hydra marks this job failed; a search goes on (conf/hparams_search/)
            fail(error, EXIT_BAD_INPUT if isinstance(error, InputError) else EXIT_DIVERGED)
        except KeyboardInterrupt as error:
            print(f"{error or 'interrupted'}", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)

    return task


# ------------------------------------------------------------------ deltaprop-train


def _train(cfg: DictConfig) -> float:
    from deltaprop.run.train import train as train_run

    return train_run(cfg)[str(cfg.objective)]


train = hydra_app(failing_cleanly(_train), "train")


# ------------------------------------------------------------ the teaching commands


def _teaching(name: str) -> Callable[[DictConfig], object]:
    def body(cfg: DictConfig):
        from deltaprop.cli import teaching

        return getattr(teaching, name)(cfg)

    return failing_cleanly(body)


gradcheck = hydra_app(_teaching("gradcheck"), "gradcheck")
speed_of_learning = hydra_app(_teaching("speed_of_learning"), "speed_of_learning")
learning_slowdown = hydra_app(_teaching("learning_slowdown"), "learning_slowdown")
vanishing_gradients = hydra_app(_teaching("vanishing_gradients"), "vanishing_gradients")

WORKED_EXAMPLE_APP = "worked_example_app"


def _register_worked_example_app() -> None:
    """conf/config.yaml with `override experiment: worked_example`: the experiment applies
    unless the command line names another one."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(
        name=WORKED_EXAMPLE_APP,
        node={"defaults": ["config", {"override experiment": "worked_example"}, "_self_"]},
    )


_register_worked_example_app()
worked_example = hydra_app(_teaching("worked_example"), "worked_example",
                           config_name=WORKED_EXAMPLE_APP)


# ------------------------------------------------------------------ deltaprop-predict


def _predict(cfg: DictConfig) -> None:
    from deltaprop.run.predict import predict_from_config

    predict_from_config(cfg)


predict = hydra_app(failing_cleanly(_predict), "predict")


def gather(argv: list[str] | None = None) -> None:
    """deltaprop-gather: join the blocks of a sweep (sweep.block=i/n) into one sweep's tables."""
    from deltaprop.run.gather import main

    sys.exit(main(argv))
