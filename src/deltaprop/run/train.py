"""`train(cfg)`: run one configured experiment, a single run or a sweep, and return the run.

    settings = read(cfg)                          # the config, once, as frozen values
    setup = RunSetup.create(settings.training())  # data, model, members, engine spec: checked
    engine = make_engine(setup.engine)            # compiled once per shape, cached
    with Checkpoints(setup) as ..., Tracker(setup) as ...:
        return run_epochs(setup, engine, checkpoints, tracker)      # loop.py

A single run is a population of one member; a sweep (trainer.num_seeds=K, sweep.lr=[...]) is
K × L members trained as one program. Both go through the same loop, so both checkpoint,
resume exactly, guard against NaN, train data parallel and write their outputs the same way.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import jax

from deltaprop.errors import EXIT_INTERRUPTED
from deltaprop.io.checkpoints import quiet_orbax_logs
from deltaprop.io.console import PACKAGE_LOGGER, config_tree, console_output
from deltaprop.io.files import write_text_atomic
from deltaprop.io.rundir import open_run_dir
from deltaprop.io.xla_cache import enable_compilation_cache
from deltaprop.nan_guard import TrainingDiverged
from deltaprop.precision import precision_scope
from deltaprop.run import parallel
from deltaprop.run.checkpointing import Checkpoints
from deltaprop.run.config import read
from deltaprop.run.engines import make_engine
from deltaprop.run.loop import run_epochs
from deltaprop.run.result import RunResult
from deltaprop.run.resume import check_resume_changes
from deltaprop.run.setup import RunSetup, describe_environment, jax_environment
from deltaprop.run.tracker import Tracker
from deltaprop.settings import TrainSettings, plain

__all__ = ["TrainingDiverged", "train"]
log = logging.getLogger(__name__)


def train(cfg: Any) -> RunResult:
    """Train the configured population; return the run (a mapping over its final metrics:
    val/best_loss, test/acc, ...; see RunResult).

    A single run's metrics are its final ones; a sweep's the mean over the finite members of
    its best grid point (cfg.objective), with sweep/members, sweep/diverged, sweep/best_lr.

    Args:
      cfg: a composed config (deltaprop.compose, a Hydra app's), or settings.Config.

    Raises:
      InputError (ConfigError, DataError, CheckpointError, RunDirError): bad input, an unusable
        checkpoint or a run directory in use, found before any training or W&B run starts.
      TrainingDiverged (RuntimeError): every member's loss or parameters became NaN/inf; the
        W&B runs are marked failed and the checkpoints saved before it are kept.
      RunInterrupted (KeyboardInterrupt): Ctrl-C; a final checkpoint is saved first when
        checkpointing is on.
    """
    enable_compilation_cache()  # (a command's is on already; a notebook's run gets it too)
    with console_output():
        settings = read(cfg, TrainSettings)
        check_resume_changes(settings)
        if settings.trainer.distributed:
            parallel.initialize_distributed()
        with precision_scope(settings.trainer.precision), quiet_orbax_logs():
            setup = RunSetup.create(settings)
            engine = make_engine(setup.engine)
            checkpoints = Checkpoints(setup)  # finds what trainer.resume names, or refuses
            tracker = Tracker(setup)  # W&B online, offline, or refused: before any work
            with open_run_dir(setup.run_dir, enabled=jax.process_index() == 0), \
                    _files_of_the_run(setup), _closing(checkpoints, tracker):
                return run_epochs(setup, engine, checkpoints, tracker)


@contextlib.contextmanager
def _files_of_the_run(setup: RunSetup):
    """Once the run's checks have passed: its config in <run dir>/.hydra/config.yaml (what
    deltaprop-eval reads; the command line's overrides beside it), the config tree and the
    devices on the console; a run started from Python (a notebook, a script) also keeps its
    lines in <run dir>/train.log, as a command's run does."""
    from hydra.core.hydra_config import HydraConfig

    if jax.process_index() != 0:
        yield
        return
    import yaml

    hydra = HydraConfig.initialized()
    (setup.run_dir / ".hydra").mkdir(exist_ok=True)
    write_text_atomic(setup.run_dir / ".hydra" / "config.yaml",
                      yaml.safe_dump(plain(setup.settings), sort_keys=False))
    if hydra:
        write_text_atomic(setup.run_dir / ".hydra" / "overrides.yaml", yaml.safe_dump(
            list(HydraConfig.get().overrides.task)))
    handler = None if hydra else logging.FileHandler(setup.run_dir / "train.log")
    if handler is not None:
        handler.setFormatter(logging.Formatter(
            "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        PACKAGE_LOGGER.addHandler(handler)
    try:
        if setup.settings.print_config:
            log.info(config_tree(plain(setup.settings)))
        log.info(describe_environment(jax_environment()))
        yield
    finally:
        if handler is not None:
            PACKAGE_LOGGER.removeHandler(handler)
            handler.close()


@contextlib.contextmanager
def _closing(checkpoints: Checkpoints, tracker: Tracker):
    """However the run ends: a save in flight completes, W&B runs still open are finished
    (failed, or interrupted)."""
    try:
        yield tracker
    except BaseException as error:
        checkpoints.close()
        tracker.close(EXIT_INTERRUPTED if isinstance(error, KeyboardInterrupt) else 1)
        raise
    finally:
        checkpoints.close()
