"""Fault injection for deltaprop.io.files: every output is written atomically, with the user's
umask; a write that fails (disk full, read-only, no permission, a path in the way) raises one
OutputError line naming the path and the cause, leaves the previous file intact and no
temporary behind.

Faults are injected into the `os` calls of deltaprop.io.files (open, write, fsync, close,
replace), and, where this machine lets a test mount a file system (root with CAP_SYS_ADMIN),
produced for real on a 64 KiB tmpfs: full, then remounted read-only. chmod alone cannot make a
read-only directory for root, so a read-only directory is the mount or an injected EROFS/EACCES.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from deltaprop.errors import InputError, OutputError
from deltaprop.io import files
from deltaprop.io.files import (
    ensure_writable_directory,
    load_params,
    load_params_and_metadata,
    save_params,
    write_bytes_atomic,
    write_csv,
    write_json,
    write_jsonl,
    write_text_atomic,
)
from deltaprop.network import init_params

PARAMS = init_params(jax.random.key(0), [2, 3, 1], "xavier", jnp.float32)

# Each writer of a run's outputs, writing something of its own kind to `path`.
WRITERS = {
    "write_json": lambda path: write_json(path, {"val/loss": 0.25, "auc": float("nan")}),
    "write_jsonl": lambda path: write_jsonl(path, [{"epoch": 1}, {"epoch": 2}]),
    "write_csv": lambda path: write_csv(path, [{"member": 0, "lr": 0.1}], ["member", "lr"]),
    "save_params": lambda path: save_params(PARAMS, path, {"loss": "bce"}),
    "write_text_atomic": lambda path: write_text_atomic(path, "text\n" * 1000),
    "write_bytes_atomic": lambda path: write_bytes_atomic(path, bytes(range(256)) * 64),
}
PREVIOUS = b"the previous, complete file\n"


class FaultyOs:
    """The `os` module, except that `operation` raises OSError(`code`) after `after` calls that
    work; with `partial`, the first failing os.write writes half its bytes and the next one
    fails (a disk that fills mid-file)."""

    def __init__(self, operation: str, code: int, partial: bool = False, after: int = 0):
        self.calls = 0
        real = getattr(os, operation)

        def fail(*args, **kwargs):
            self.calls += 1
            if self.calls <= after:
                return real(*args, **kwargs)
            if partial and self.calls == after + 1:
                return os.write(args[0], bytes(args[1])[: max(1, len(args[1]) // 2)])
            raise OSError(code, os.strerror(code))

        setattr(self, operation, fail)

    def __getattr__(self, name):
        return getattr(os, name)


def assert_one_line_naming(error: BaseException, path: Path, code: int) -> None:
    message = str(error)
    assert "\n" not in message
    assert str(path) in message
    assert os.strerror(code) in message and errno.errorcode[code] in message


FAULTS = [
    ("open", errno.ENOSPC, False),
    ("open", errno.EROFS, False),
    ("open", errno.EACCES, False),
    ("write", errno.ENOSPC, False),
    ("write", errno.ENOSPC, True),  # half the file written, then the disk is full
    ("write", errno.EDQUOT, True),
    ("fsync", errno.EIO, False),
    ("close", errno.ENOSPC, False),  # NFS reports a full disk at close
    ("replace", errno.EROFS, False),
    ("replace", errno.EACCES, False),
]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize(("operation", "code", "partial"), FAULTS, ids=[
    f"{operation}-{errno.errorcode[code]}{'-half written' if partial else ''}"
    for operation, code, partial in FAULTS])
@pytest.mark.parametrize("previous", [True, False], ids=["over a file", "new file"])
def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(
        tmp_path, monkeypatch, writer, operation, code, partial, previous):
    path = tmp_path / "output"
    if previous:
        path.write_bytes(PREVIOUS)
    faulty = FaultyOs(operation, code, partial)
    monkeypatch.setattr(files, "os", faulty)
    with pytest.raises(OutputError) as caught:
        WRITERS[writer](path)
    monkeypatch.undo()
    assert faulty.calls >= 1  # the fault was met, not skipped
    assert_one_line_naming(caught.value, path, code)
    assert isinstance(caught.value, InputError)  # the entry points exit 2 with its one line
    assert sorted(os.listdir(tmp_path)) == (["output"] if previous else [])
    if previous:
        assert path.read_bytes() == PREVIOUS


@pytest.mark.parametrize("writer", WRITERS)
def test_ctrl_c_during_a_write_keeps_the_previous_file(tmp_path, monkeypatch, writer):
    path = tmp_path / "output"
    path.write_bytes(PREVIOUS)

    def interrupted(*args):
        raise KeyboardInterrupt

    faulty = FaultyOs("write", errno.EIO)
    faulty.write = interrupted
    monkeypatch.setattr(files, "os", faulty)
    with pytest.raises(KeyboardInterrupt):
        WRITERS[writer](path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["output"] and path.read_bytes() == PREVIOUS


@pytest.mark.parametrize("writer", WRITERS)
def test_a_write_replaces_the_file_whole(tmp_path, writer):
    path = tmp_path / "output"
    path.write_bytes(PREVIOUS)
    WRITERS[writer](path)
    assert path.read_bytes() != PREVIOUS and os.listdir(tmp_path) == ["output"]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    WRITERS[writer](fresh / "output")
    if writer == "save_params":  # safetensors orders its metadata as it likes: compare content
        assert load_params_and_metadata(path)[1] == load_params_and_metadata(fresh / "output")[1]
    else:
        assert (fresh / "output").read_bytes() == path.read_bytes()  # the same either way


def test_the_written_parameters_load_back(tmp_path):
    loaded = load_params(save_params(PARAMS, tmp_path / "params.safetensors"))
    assert all((loaded[i]["W"] == PARAMS[i]["W"]).all() for i in range(len(PARAMS)))


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
@pytest.mark.parametrize("writer", WRITERS)
def test_every_output_gets_the_users_umask(tmp_path, writer, umask, mode):
    """params.safetensors too (the safetensors library alone wrote it 0600)."""
    previous = os.umask(umask)
    try:
        path = WRITERS[writer](tmp_path / "output")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == mode


@pytest.mark.parametrize("writer", WRITERS)
def test_paths_in_the_way_are_named_in_one_line(tmp_path, writer):
    """Real errors, no injection: a parent that is a file, a directory where the file goes,
    a directory that does not exist."""
    (tmp_path / "a_file").write_text("keep me")
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "a_dir" / "inside").write_text("keep me too")
    cases = [(tmp_path / "a_file" / "output", errno.ENOTDIR),
             (tmp_path / "a_dir", errno.EISDIR),
             (tmp_path / "missing" / "output", errno.ENOENT)]
    for path, code in cases:
        with pytest.raises(OutputError) as caught:
            WRITERS[writer](path)
        assert_one_line_naming(caught.value, path, code)
    assert sorted(os.listdir(tmp_path)) == ["a_dir", "a_file"]
    assert os.listdir(tmp_path / "a_dir") == ["inside"]
    assert (tmp_path / "a_file").read_text() == "keep me"


def test_a_run_directory_that_is_a_file_or_under_one_is_refused(tmp_path):
    (tmp_path / "a_file").write_text("keep me")
    with pytest.raises(OutputError, match=r"cannot create .*a_file: File exists \(EEXIST: a "
                                          r"file of that name is in the way\)"):
        ensure_writable_directory(tmp_path / "a_file")
    with pytest.raises(OutputError, match=r"a_file/run: Not a directory \(ENOTDIR"):
        ensure_writable_directory(tmp_path / "a_file" / "run")
    assert (tmp_path / "a_file").read_text() == "keep me"
    made = ensure_writable_directory(tmp_path / "new" / "run")
    assert made.is_dir() and os.listdir(made) == []  # the write check leaves nothing


def test_a_read_only_run_directory_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "os", FaultyOs("open", errno.EROFS))
    with pytest.raises(OutputError) as caught:
        ensure_writable_directory(tmp_path)
    monkeypatch.undo()
    assert_one_line_naming(caught.value, tmp_path / ".deltaprop-write-check", errno.EROFS)


# ---------------------------------------------------------------- a real, tiny file system


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 64 KiB tmpfs mounted at tmp_path/mnt (unmounted after the test)."""
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                              str(mount_point)], check=False, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): "
                    "the injected faults above cover the same paths")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def fill(directory: Path) -> None:
    """Write zeros into directory/filler until the file system is full."""
    descriptor = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(descriptor, bytes(4096))
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        os.close(descriptor)


@pytest.mark.parametrize("writer", WRITERS)
def test_a_full_disk_keeps_the_previous_file(tiny_filesystem, writer):
    path = tiny_filesystem / "output"
    path.write_bytes(PREVIOUS)
    fill(tiny_filesystem)
    with pytest.raises(OutputError) as caught:
        WRITERS[writer](path)
    assert_one_line_naming(caught.value, path, errno.ENOSPC)
    assert path.read_bytes() == PREVIOUS
    assert sorted(os.listdir(tiny_filesystem)) == ["filler", "output"]
    (tiny_filesystem / "filler").unlink()  # room again: the same call writes the whole file
    assert WRITERS[writer](path).read_bytes() != PREVIOUS


@pytest.mark.parametrize("writer", WRITERS)
def test_a_read_only_mount_keeps_the_previous_file(tiny_filesystem, writer):
    path = tiny_filesystem / "output"
    path.write_bytes(PREVIOUS)
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_filesystem)], check=True)
    with pytest.raises(OutputError) as caught:
        WRITERS[writer](path)
    assert_one_line_naming(caught.value, path, errno.EROFS)
    assert path.read_bytes() == PREVIOUS and os.listdir(tiny_filesystem) == ["output"]
    with pytest.raises(OutputError, match="Read-only file system"):
        ensure_writable_directory(tiny_filesystem / "run")
    with pytest.raises(OutputError, match="Read-only file system"):
        ensure_writable_directory(tiny_filesystem)
