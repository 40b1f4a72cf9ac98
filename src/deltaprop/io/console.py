"""What a run says, through Python `logging` (the `deltaprop.*` loggers).

Under a Hydra app the job's logging config writes every line to the console and to
`<run dir>/<job name>.log` (conf/config.yaml: the console shows the message alone). Called
from a notebook or a script, `console_output()` gives the `deltaprop` logger a plain stdout
handler for the length of the call, so `deltaprop.train(cfg)` prints what the command prints.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

PACKAGE_LOGGER = logging.getLogger("deltaprop")


class MessageFormatter(logging.Formatter):
    """The message alone, after its level for a warning or an error ("warning: ...",
    "error: ..."): one prefix per line, written by no caller. Hydra's console handler uses it
    (conf/config.yaml), and so does `console_output`."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at the time (a notebook's, a test's capture)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _):
        pass


def _console_handlers(logger: logging.Logger) -> list[logging.Handler]:
    return [handler for handler in logger.handlers
            if isinstance(handler, logging.StreamHandler)
            and getattr(handler, "stream", None) in (sys.stdout, sys.stderr)]


def _hydra_logs() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and bool(logging.getLogger().handlers)


@contextmanager
def console_output() -> Iterator[None]:
    """INFO lines of the `deltaprop` loggers on stdout for the duration, unless a Hydra app's
    logging already takes them (or someone configured the `deltaprop` logger)."""
    if _hydra_logs() or PACKAGE_LOGGER.handlers:
        yield
        return
    handler = _StdoutHandler()
    handler.setFormatter(MessageFormatter("%(message)s"))
    level, propagate = PACKAGE_LOGGER.level, PACKAGE_LOGGER.propagate
    PACKAGE_LOGGER.addHandler(handler)
    PACKAGE_LOGGER.setLevel(logging.INFO)
    PACKAGE_LOGGER.propagate = False  # not twice, when the root logger has a handler too
    try:
        yield
    finally:
        PACKAGE_LOGGER.removeHandler(handler)
        PACKAGE_LOGGER.setLevel(level)
        PACKAGE_LOGGER.propagate = propagate


def around_progress_bar(enabled: bool):
    """Log lines written above a tqdm bar (tqdm.write) instead of through it."""
    if not enabled:
        return nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    loggers = [lg for lg in (logging.getLogger(), PACKAGE_LOGGER) if _console_handlers(lg)]
    return logging_redirect_tqdm(loggers=loggers) if loggers else nullcontext()


def is_terminal() -> bool:
    """Whether a progress bar would be seen (stderr, where tqdm draws, is a terminal)."""
    return sys.stderr.isatty()


def config_tree(config: dict) -> str:
    """The config (settings.plain of the settings) as a tree, one branch per group (rich), for
    the start of a run."""
    from rich.console import Console
    from rich.tree import Tree

    def leaf(key: str, value) -> str:
        plain = isinstance(value, (list, dict, bool)) or value is None
        return f"{key}: {json.dumps(value) if plain else value}"

    tree = Tree("config", guide_style="dim")
    for key, value in config.items():
        if isinstance(value, dict) and value:
            branch = tree.add(key)
            for name, item in value.items():
                branch.add(leaf(name, item))
        else:
            tree.add(leaf(key, value))
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=False, color_system=None, width=100).print(tree)
    return buffer.getvalue().rstrip()
