"""The console commands: thin Hydra apps, each on its own primary config in the packaged configs
(`deltaprop.conf`, the project's conf/), installed by `pip install .` and called by
experiments/*.py.

    deltaprop-train               conf/config.yaml               train a run or a sweep
    deltaprop-eval                conf/eval.yaml                 score a trained run's test split
    deltaprop-predict             conf/predict.yaml              a trained model on new data
    deltaprop-gradcheck           conf/gradcheck.yaml            manual_grad vs jax.grad and FD
    deltaprop-worked-example      conf/worked_example.yaml       every number of one step
    deltaprop-speed-of-learning   conf/speed_of_learning.yaml    Nielsen's ‖∂C/∂b^l‖ per layer
    deltaprop-learning-slowdown   conf/learning_slowdown.yaml    one neuron, both costs
    deltaprop-vanishing-gradients conf/vanishing_gradients.yaml  ‖δ_l‖ from epoch 0, per φ
    deltaprop-gather                                             join the blocks of a sweep

Each body reads its config once (run/config.read) and hands plain settings to the library;
the teaching commands' bodies are in cli/teaching.py, the checks made before Hydra starts (help,
an experiment of another command, a missing plugin or backend) in cli/launch.py. Nothing here
imports JAX at import time: --help and tab completion stay fast.

Exit codes (deltaprop.errors): 0 done, 2 bad input, 3 every member diverged, 4 a gradient check
failed, 130 interrupted. Each command also accepts the `--key=value` form a W&B sweep agent
passes (`${args}`): it becomes Hydra's `key=value`.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

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
from deltaprop.run.config import COMMANDS

log = logging.getLogger(__name__)


def fail(error: BaseException | str, code: int) -> None:
    """One line on stderr, the exit code; no traceback."""
    print(f"error: {error}", file=sys.stderr)
    sys.exit(code)


def hydra_app(task: Callable[[DictConfig], object], command: str):
    """The console command `command` (a key of run.config.COMMANDS): Hydra's app of that job
    name on the command's primary config; `config_path` lets experiments/*.py use a checkout's
    conf/."""
    from deltaprop.cli.launch import PACKAGED_CONF, launch

    def run(config_path: str = PACKAGED_CONF) -> None:
        launch(task, COMMANDS[command], config_path)

    return run


def failing_cleanly(body: Callable[[DictConfig], object]) -> Callable[[DictConfig], object]:
    """`body(cfg)`, with bad input (exit 2), a diverged run (3) and Ctrl-C (130) each one line on
    stderr. In a multirun the job fails and Hydra goes on (a search skips the trial). A single
    launch that fails on bad input removes the folder it made for itself, if nothing but
    Hydra's own files is in it."""

    def task(cfg: DictConfig):
        try:
            return body(cfg)
        except (InputError, TrainingDiverged) as error:
            if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
                log.error(str(error))  # "error: ..." on the console and in the job's log
                raise  # Hydra marks this job failed; a search goes on (conf/hparams_search/)
            if isinstance(error, InputError):
                _discard_unused_run_dir(cfg)
            fail(error, EXIT_BAD_INPUT if isinstance(error, InputError) else EXIT_DIVERGED)
        except KeyboardInterrupt as error:
            print(f"{error or 'interrupted'}", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)

    return task


def _discard_unused_run_dir(cfg: DictConfig) -> None:
    """The launch's own folder (outputs/<command>/<experiment>/<time with microseconds>: no
    other launch can have made it) holding only .hydra/ and the job's log: removed, and its
    parents up to outputs/ where that leaves them empty. A run_dir the user named is never
    touched."""
    if not HydraConfig.initialized() or cfg.get("run_dir") is not None:
        return
    hydra_cfg = HydraConfig.get()
    if any(override.startswith(("hydra.run.dir=", "hydra.sweep.dir="))
           for override in hydra_cfg.overrides.hydra):
        return  # a folder the user named
    folder = Path(hydra_cfg.runtime.output_dir)
    own = {".hydra", f"{hydra_cfg.job.name}.log"}
    if folder.is_dir() and {path.name for path in folder.iterdir()} <= own:
        shutil.rmtree(folder, ignore_errors=True)
        # outputs/<command>/<experiment> too, when the launch left them empty
        for parent in folder.parents[:3]:
            try:
                parent.rmdir()  # only an empty directory
            except OSError:
                break


# ------------------------------------------------------------------ the commands


def _train(cfg: DictConfig) -> float:
    from deltaprop.run.train import train as train_run

    return train_run(cfg)[str(cfg.objective)]


def _body(module: str, name: str) -> Callable[[DictConfig], object]:
    """The function `name` of `module`, imported when the command runs (JAX with it)."""

    def body(cfg: DictConfig):
        from importlib import import_module

        return getattr(import_module(module), name)(cfg)

    return failing_cleanly(body)


TEACHING = "deltaprop.cli.teaching"
train = hydra_app(failing_cleanly(_train), "train")
evaluate = hydra_app(_body("deltaprop.run.evaluate", "evaluate_from_config"), "eval")
predict = hydra_app(_body("deltaprop.run.predict", "predict_from_config"), "predict")
gradcheck = hydra_app(_body(TEACHING, "gradcheck"), "gradcheck")
worked_example = hydra_app(_body(TEACHING, "worked_example"), "worked_example")
speed_of_learning = hydra_app(_body(TEACHING, "speed_of_learning"), "speed_of_learning")
learning_slowdown = hydra_app(_body(TEACHING, "learning_slowdown"), "learning_slowdown")
vanishing_gradients = hydra_app(_body(TEACHING, "vanishing_gradients"), "vanishing_gradients")


def gather(argv: list[str] | None = None) -> None:
    """deltaprop-gather: join the blocks of a sweep (sweep.block=i/n) into one sweep's tables."""
    from deltaprop.run.gather import main

    sys.exit(main(argv))
