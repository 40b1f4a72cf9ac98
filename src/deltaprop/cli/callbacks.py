"""Hydra callbacks of every command (conf/shared.yaml lists them under hydra.callbacks)."""

from __future__ import annotations

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class RunDirectoryCheck(Callback):
    """Before Hydra makes the launch's folder and opens its log there: the folder can be made
    and written to, or the command stops with one line, exit 2 (a file in the way, a parent that
    is a file, a read-only or full disk), instead of a traceback from inside Hydra."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        _check(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _check(config.hydra.sweep.dir)


def _check(directory: str) -> None:
    from deltaprop.cli import fail
    from deltaprop.errors import EXIT_BAD_INPUT, OutputError
    from deltaprop.io.files import ensure_writable_directory

    try:
        ensure_writable_directory(directory)
    except OutputError as error:
        fail(error, EXIT_BAD_INPUT)
