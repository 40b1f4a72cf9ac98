"""The run directory: one writer at a time, and an earlier run's outputs never overwritten unasked.

A run holds an exclusive lock on `<run_dir>/.deltaprop.lock` for its whole life (flock: the
operating system releases it however the process ends, so a lock is never stale). A second run
in the same directory stops with one line naming the first. A directory that already holds a
run's outputs is refused unless the new run resumes it or `run_dir_exists=overwrite`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

from deltaprop.errors import InputError

LOCK_NAME = ".deltaprop.lock"
# What a run leaves in its directory (Hydra's own .hydra/ and train.log do not count).
OUTPUTS = ("summary.json", "metrics.jsonl", "params.safetensors", "members.csv", "members.json",
           "members", "checkpoints")


class RunDirError(InputError):
    """The run directory is in use, or holds an earlier run's outputs."""


def earlier_outputs(run_dir: Path) -> list[str]:
    """The names in `run_dir` that an earlier run wrote."""
    return [name for name in OUTPUTS if (Path(run_dir) / name).exists()]


def check_run_dir(run_dir: Path, resuming: bool, exists: str = "error") -> None:
    """Raise RunDirError if `run_dir` holds an earlier run's outputs and this run neither resumes
    it nor was told to overwrite (`exists="overwrite"`)."""
    found = earlier_outputs(run_dir)
    if found and not resuming and exists != "overwrite":
        raise RunDirError(
            f"{run_dir} holds an earlier run's outputs ({', '.join(found)}); resume it with "
            "trainer.resume=auto, choose another run_dir / hydra.run.dir, or replace them with "
            "run_dir_exists=overwrite"
        )


@contextlib.contextmanager
def open_run_dir(run_dir: Path, enabled: bool = True):
    """Create the run directory and hold its lock for the body (`enabled`: this process writes).

    Raises:
      OutputError: one line naming the directory and why it cannot be used (a file is in the
        way, it is read-only, the disk is full, ...).
      RunDirError: another run holds it.
    """
    if not enabled:
        yield
        return
    from deltaprop.io.files import ensure_writable_directory

    ensure_writable_directory(run_dir)  # OutputError: a file in the way, read-only, disk full
    with run_dir_lock(run_dir):
        yield


@contextlib.contextmanager
def run_dir_lock(run_dir: Path, enabled: bool = True):
    """Hold the run directory's lock for the body; RunDirError if another process holds it."""
    if not enabled:
        yield
        return
    path = Path(run_dir) / LOCK_NAME
    try:
        file = open(path, "a+")  # noqa: SIM115  (closed below, however the run ends)
    except OSError as error:
        raise RunDirError(f"cannot write to the run directory {run_dir}: "
                          f"{error.strerror or error}") from None
    with file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "another process"
            raise RunDirError(
                f"{run_dir} is in use by another run ({holder}); wait for it to end or choose "
                "another run_dir / hydra.run.dir"
            ) from None
        file.seek(0)
        file.truncate()
        file.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        file.flush()
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)
