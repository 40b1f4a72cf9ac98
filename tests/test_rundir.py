"""Tests for deltaprop.io.rundir: one writer per run directory, earlier outputs kept unless asked."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deltaprop.io.rundir import LOCK_NAME, RunDirError, check_run_dir, run_dir_lock

HOLD_THE_LOCK = """
import sys, time
from deltaprop.io.rundir import run_dir_lock
with run_dir_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=rf"{tmp_path} is in use by another run \(pid "
                                              rf"{holder.pid} on "), run_dir_lock(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
    with run_dir_lock(tmp_path):  # the dead process's lock is gone with it: never stale
        assert (tmp_path / LOCK_NAME).read_text().startswith("pid ")


def test_the_lock_is_released_on_any_exit(tmp_path):
    with pytest.raises(RuntimeError), run_dir_lock(tmp_path):
        raise RuntimeError("the run failed")
    with run_dir_lock(tmp_path), pytest.raises(RunDirError), run_dir_lock(tmp_path):
        pass  # a second writer while the first holds it


def test_earlier_outputs_are_refused_unless_resuming_or_overwriting(tmp_path):
    check_run_dir(tmp_path, resuming=False)  # empty: fine
    (tmp_path / ".hydra").mkdir()  # Hydra's own files do not count
    (tmp_path / "train.log").write_text("")
    check_run_dir(tmp_path, resuming=False)
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(RunDirError, match=r"holds an earlier run's outputs \(summary.json\); "
                                          r"resume it with trainer.resume=auto"):
        check_run_dir(tmp_path, resuming=False)
    check_run_dir(tmp_path, resuming=True)
    check_run_dir(tmp_path, resuming=False, exists="overwrite")
