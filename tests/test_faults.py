"""Fault injection: kills during saves, damaged checkpoints, two writers, a full disk, and resumes
with changed settings; each test asserts what was kept.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import EXPERIMENTS, assert_same_params, cli_env

from deltaprop.errors import ConfigError
from deltaprop.io import checkpoints
from deltaprop.io.checkpoints import CheckpointError, CheckpointMismatch, CheckpointRef
from deltaprop.io.files import load_params
from deltaprop.run.train import train

SAVE_EVERY_EPOCH = ["trainer.checkpoint_every=1", "trainer.keep_checkpoints=50"]


def train_cli(run_dir: Path, *overrides: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(EXPERIMENTS / "train.py"), f"run_dir={run_dir}", *overrides],
        env=cli_env(), **popen,
    )


# ---------------------------------------------------------------- kills while saving


KILLED_RUN = ["logger=none", "logger.plots=false", "trainer.progress=false", "trainer.epochs=24",
              "trainer.eval_every=3", "dataset.n_samples=200", "model.hidden=[8]",
              "optimizer=adam", "optimizer.lr=0.02", *SAVE_EVERY_EPOCH]
KILLED_KINDS = {  # kind: (its overrides, the files an uninterrupted twin must equal)
    "single": ([], ["params.safetensors", "metrics.jsonl"]),
    "sweep": (["trainer.num_seeds=2", "sweep.lr=[0.02,0.05]"],
              [f"members/member_{m}/{name}" for m in range(4)
               for name in ("params.safetensors", "metrics.jsonl")]),
}


def kill_during_saves(running: dict[str, subprocess.Popen], tmp_path: Path,
                      rng: random.Random) -> dict[str, int]:
    """SIGKILL each run 0-0.3 s after it completed two more saves (somewhere in the next
    ones), watching every run at once: waiting for one run at a time let the other finish
    unkilled on a busy machine. Returns each run's newest complete step when it died."""
    roots = {kind: tmp_path / kind / "checkpoints" for kind in running}
    targets = {kind: len(checkpoints.complete_steps(root)) + 2 for kind, root in roots.items()}
    kill_at: dict[str, float] = {}
    killed: dict[str, int] = {}
    deadline = time.monotonic() + 300  # a hang guard
    while len(killed) < len(running) and time.monotonic() < deadline:
        now = time.monotonic()
        for kind, process in running.items():
            if kind in killed:
                continue
            saved = len(checkpoints.complete_steps(roots[kind]))
            if kind not in kill_at and (process.poll() is not None or saved >= targets[kind]):
                kill_at[kind] = now + rng.uniform(0, 0.3)
            if kind in kill_at and now >= kill_at[kind]:
                process.send_signal(signal.SIGKILL)  # nothing, if it has ended already
                process.wait()
                killed[kind] = max(checkpoints.complete_steps(roots[kind]))
        time.sleep(0.01)
    return killed


@pytest.mark.slow
def test_sigkills_during_saves_then_resume_are_bit_identical(tmp_path):
    """A single run and a sweep, each SIGKILLed twice at random moments (saving every epoch, so
    most kills land in a save), then resumed: every file equals an uninterrupted twin's. All
    processes of a round run at once."""
    rng = random.Random(0)
    references = {kind: train_cli(tmp_path / f"{kind}-reference", *KILLED_RUN, *extra,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for kind, (extra, _) in KILLED_KINDS.items()}
    kills: dict[str, list[int]] = {kind: [] for kind in KILLED_KINDS}
    for attempt in range(2):
        resume = ["trainer.resume=auto"] if attempt else []
        running = {kind: train_cli(tmp_path / kind, *KILLED_RUN, *extra, *resume,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for kind, (extra, _) in KILLED_KINDS.items()}
        for kind, step in kill_during_saves(running, tmp_path, rng).items():
            kills[kind].append(step)
    finals = {kind: train_cli(tmp_path / kind, *KILLED_RUN, *extra, "trainer.resume=auto",
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for kind, (extra, _) in KILLED_KINDS.items()}
    for kind, (_, files) in KILLED_KINDS.items():
        assert kills[kind] == sorted(kills[kind]) and kills[kind][-1] < 24, kills
        out, err = finals[kind].communicate(timeout=300)
        assert finals[kind].returncode == 0, err
        assert "resuming from" in out
        assert references[kind].wait(timeout=300) == 0
        for name in files:
            killed, reference = tmp_path / kind / name, tmp_path / f"{kind}-reference" / name
            if name.endswith(".safetensors"):
                assert_same_params(killed, reference)
            else:
                assert killed.read_text() == reference.read_text()


# ---------------------------------------------------------------- damaged checkpoints


def damage(step_dir: Path, how: str) -> None:
    """missing: every state file gone; corrupt: every one garbage; flipped: one bit of one
    byte in the middle of each data file the step's OCDBT manifest reads (state/d/*): most such
    flips read back fine as other numbers, which only the digest can tell."""
    files = sorted(path for path in (step_dir / "state").rglob("*") if path.is_file())
    if how == "missing":
        for path in files:
            path.unlink()
    elif how == "corrupt":
        for path in files:
            path.write_bytes(b"\x00garbage" * 3)
    else:
        for path in sorted((step_dir / "state" / "d").iterdir()):
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0x10
            path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["missing", "corrupt", "flipped"])
def test_a_damaged_latest_checkpoint_is_skipped_and_set_aside(make_cfg, tmp_path, capsys, how):
    train(make_cfg("trainer.epochs=4", *SAVE_EVERY_EPOCH, run_dir=tmp_path / "reference"))
    run_dir = tmp_path / "run"
    train(make_cfg("trainer.epochs=4", *SAVE_EVERY_EPOCH))
    (run_dir / "params.safetensors").rename(tmp_path / "first.safetensors")
    damage(run_dir / "checkpoints" / "4", how)

    train(make_cfg("trainer.epochs=4", *SAVE_EVERY_EPOCH, "trainer.resume=auto"))

    out = capsys.readouterr().out
    assert f"note: skipping checkpoint {run_dir / 'checkpoints' / '4'}: " in out
    assert f"note: checkpoint {run_dir / 'checkpoints' / '4'} failed verification; kept as" in out
    assert f"resuming from {run_dir / 'checkpoints' / '3'} (epoch 3 of 4)" in out
    assert (run_dir / "checkpoints" / "4.unusable" / "state").is_dir()  # kept, not deleted
    assert checkpoints.complete_steps(run_dir / "checkpoints") == [1, 2, 3, 4]  # 4 written anew
    assert_same_params(run_dir / "params.safetensors", tmp_path / "reference" / "params.safetensors")


def test_when_no_checkpoint_can_be_restored_nothing_is_touched(make_cfg, tmp_path):
    train(make_cfg("trainer.epochs=2", *SAVE_EVERY_EPOCH))
    root = tmp_path / "run" / "checkpoints"
    for step in (1, 2):
        damage(root / str(step), "corrupt")
    before = sorted(str(path.relative_to(root)) for path in root.rglob("*"))
    with pytest.raises(CheckpointError, match=r"none of the 2 checkpoints of .* could be "
                                              r"restored \(nothing was changed\)"):
        train(make_cfg("trainer.epochs=4", *SAVE_EVERY_EPOCH, "trainer.resume=auto"))
    assert sorted(str(path.relative_to(root)) for path in root.rglob("*")) == before


def test_a_step_without_orbax_commit_marker_is_still_used(make_cfg, tmp_path):
    """orbax finalizes a local step by renaming it; the marker file is not what makes it whole."""
    train(make_cfg("trainer.epochs=3", *SAVE_EVERY_EPOCH))
    root = tmp_path / "run" / "checkpoints"
    for step in (1, 2, 3):
        (root / str(step) / checkpoints.COMMIT_MARKER).unlink(missing_ok=True)
    assert checkpoints.complete_steps(root) == [1, 2, 3]
    train(make_cfg("trainer.epochs=4", *SAVE_EVERY_EPOCH, "trainer.resume=auto"))
    assert checkpoints.complete_steps(root) == [1, 2, 3, 4]  # nothing was removed


def test_a_float64_state_in_a_float32_step_is_never_cast(make_cfg, tmp_path, capsys):
    train(make_cfg("trainer.epochs=2", *SAVE_EVERY_EPOCH, run_dir=tmp_path / "reference"))
    train(make_cfg("trainer.epochs=2", *SAVE_EVERY_EPOCH, "trainer.precision=float64",
                   run_dir=tmp_path / "f64"))
    train(make_cfg("trainer.epochs=2", *SAVE_EVERY_EPOCH))
    step = tmp_path / "run" / "checkpoints" / "2"
    shutil.rmtree(step / "state")
    shutil.copytree(tmp_path / "f64" / "checkpoints" / "2" / "state", step / "state")

    train(make_cfg("trainer.epochs=2", *SAVE_EVERY_EPOCH, "trainer.resume=auto"))

    out = capsys.readouterr().out
    assert re.search(rf"note: skipping checkpoint {step}: checkpoint {step} holds \S+ as "
                     r"float64 \S*, but this run's state has float32 \S* \(arrays are never "
                     r"cast\)", out)
    assert (step.parent / "2.unusable").is_dir()
    assert_same_params(tmp_path / "run" / "params.safetensors",
                       tmp_path / "reference" / "params.safetensors")


def test_a_progress_record_edited_to_fewer_members_fails_verification(make_cfg, tmp_path, capsys):
    sweep = ("trainer.num_seeds=4", "trainer.epochs=2", *SAVE_EVERY_EPOCH)
    train(make_cfg(*sweep, run_dir=tmp_path / "reference"))
    train(make_cfg(*sweep))
    record = tmp_path / "run" / "checkpoints" / "2" / "progress" / "metadata"
    progress = json.loads(record.read_text())
    progress["members"] = progress["members"][:3]  # 3 of 4 members
    record.write_text(json.dumps(progress))

    train(make_cfg(*sweep, "trainer.resume=auto"))

    out = capsys.readouterr().out
    assert "fails verification: its arrays or progress record differ from the digest" in out
    assert "resuming from" in out and "(epoch 1 of 2)" in out
    for m in range(4):
        member = Path("members") / f"member_{m}" / "params.safetensors"
        assert_same_params(tmp_path / "run" / member, tmp_path / "reference" / member)


def test_resuming_an_older_step_sets_the_newer_ones_aside_so_none_is_stale(make_cfg, tmp_path,
                                                                             capsys):
    """Steps 1..4 at lr 1.0; resume step 2 at lr 0.5 up to epoch 3; then resume=auto to 4:
    the same as two epochs at lr 1.0 followed, uninterrupted, by two at lr 0.5."""
    lr_change = ("optimizer.lr=0.5", "trainer.resume_changes=[optimizer.lr]")
    reference = tmp_path / "reference"
    train(make_cfg("trainer.epochs=2", *SAVE_EVERY_EPOCH, run_dir=reference))
    train(make_cfg("trainer.epochs=4", *SAVE_EVERY_EPOCH, "trainer.resume=auto", *lr_change,
                   run_dir=reference))
    root = tmp_path / "run" / "checkpoints"
    train(make_cfg("trainer.epochs=4", *SAVE_EVERY_EPOCH))

    train(make_cfg("trainer.epochs=3", *SAVE_EVERY_EPOCH, f"trainer.resume={root / '2'}",
                   *lr_change))
    out = capsys.readouterr().out
    assert (f"note: resuming from epoch 2, so the newer checkpoints 3, 4 of {root} are set "
            "aside (never deleted)") in out
    assert (root / "3.superseded").is_dir() and (root / "4.superseded").is_dir()
    assert checkpoints.complete_steps(root) == [1, 2, 3]  # 3 saved anew, not skipped

    train(make_cfg("trainer.epochs=4", *SAVE_EVERY_EPOCH, "trainer.resume=auto", *lr_change))
    assert f"resuming from {root / '3'} (epoch 3 of 4)" in capsys.readouterr().out
    assert_same_params(tmp_path / "run" / "params.safetensors", reference / "params.safetensors")


def test_a_block_copied_and_resumed_as_another_block_is_refused(make_cfg, tmp_path):
    block = ("trainer.num_seeds=2", "sweep.lr=[0.3,1.0]", "trainer.epochs=2",
             *SAVE_EVERY_EPOCH)
    train(make_cfg(*block, "sweep.block=0/2", run_dir=tmp_path / "block0"))
    shutil.copytree(tmp_path / "block0", tmp_path / "run")
    before = snapshot(tmp_path / "run")
    with pytest.raises(CheckpointMismatch, match=r"does not match this run: its member 0 is "
                                                 r"\{'index': 0, .*this run's is \{'index': 2"):
        train(make_cfg(*block, "sweep.block=1/2", "trainer.resume=auto"))
    with pytest.raises(ConfigError, match=r"names sweep.block, which cannot change on resume: "
                                          r"it changes the block"):
        train(make_cfg(*block, "sweep.block=1/2", "trainer.resume=auto",
                       "trainer.resume_changes=[sweep.block]"))
    assert snapshot(tmp_path / "run") == before  # nothing changed on disk


def test_a_changed_batch_layout_is_refused_even_when_named(make_cfg, tmp_path, two_epochs):
    resume = f"trainer.resume={two_epochs}"
    with pytest.raises(CheckpointMismatch, match=r"trainer.limit_batches 0 -> 2; trainer."
                                                 r"limit_batches cannot change on resume \(it "
                                                 r"changes the batch layout\)"):
        train(make_cfg("trainer.epochs=4", resume, "trainer.limit_batches=2"))
    with pytest.raises(ConfigError, match="names trainer.limit_batches, which cannot change"):
        train(make_cfg("trainer.epochs=4", resume, "trainer.limit_batches=2",
                       "trainer.resume_changes=[trainer.limit_batches]"))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_refused_resume_exits_2_with_one_line_and_changes_nothing(tmp_path, two_epochs):
    run_dir = tmp_path / "copy"
    shutil.copytree(two_epochs, run_dir)
    before = snapshot(run_dir)
    done = subprocess.run(
        [sys.executable, str(EXPERIMENTS / "train.py"), f"run_dir={run_dir}", "logger=none",
         "dataset.n_samples=120", "model.hidden=[4]", "trainer.batch_size=16",
         "trainer.epochs=4", "trainer.resume=auto", "trainer.limit_batches=2"],
        env=cli_env(), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "trainer.limit_batches 0 -> 2" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot(run_dir) == before


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under `directory` with its size and modification time."""
    return {str(path.relative_to(directory)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(directory.rglob("*")) if path.is_file()
            and path.name != ".deltaprop.lock"}


# ---------------------------------------------------------------- two writers


def test_a_second_run_in_the_same_directory_is_refused(make_cfg, tmp_path):
    """A run holds its directory's lock (here: this process, as a first run would); a second
    run there is refused naming the holder, before it writes anything."""
    from deltaprop.io.rundir import RunDirError, run_dir_lock

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with run_dir_lock(run_dir):
        with pytest.raises(RunDirError, match=rf"{run_dir} is in use by another run \(pid "
                                              rf"{os.getpid()} on "):
            train(make_cfg())
        assert sorted(path.name for path in run_dir.iterdir()) == [".deltaprop.lock"]


def test_a_directory_with_an_earlier_runs_outputs_is_refused(make_cfg, tmp_path):
    from deltaprop.io.rundir import RunDirError

    train(make_cfg("trainer.epochs=2"))
    before = (tmp_path / "run" / "summary.json").read_text()
    with pytest.raises(RunDirError, match="holds an earlier run's outputs"):
        train(make_cfg("trainer.epochs=3"))
    assert (tmp_path / "run" / "summary.json").read_text() == before
    train(make_cfg("trainer.epochs=3", "run_dir_exists=overwrite"))
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["epoch"] == 3


# ---------------------------------------------------------------- a full disk


def test_a_full_disk_during_a_save_keeps_every_earlier_checkpoint(make_cfg, tmp_path, monkeypatch):
    save = checkpoints.save_checkpoint

    def full_at_epoch_3(manager, state, epoch, progress, metadata):
        if epoch == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(manager, state, epoch, progress, metadata)

    monkeypatch.setattr(checkpoints, "save_checkpoint", full_at_epoch_3)
    with pytest.raises(OSError, match="No space left on device"):
        train(make_cfg("trainer.epochs=5", *SAVE_EVERY_EPOCH))
    monkeypatch.undo()
    root = tmp_path / "run" / "checkpoints"
    assert checkpoints.complete_steps(root) == [1, 2]
    train(make_cfg("trainer.epochs=5", *SAVE_EVERY_EPOCH, "trainer.resume=auto"))
    train(make_cfg("trainer.epochs=5", run_dir=tmp_path / "reference"))
    assert_same_params(tmp_path / "run" / "params.safetensors",
                       tmp_path / "reference" / "params.safetensors")


# ---------------------------------------------------------------- resume with changed settings


CHANGES = [
    ("optimizer.lr=0.3", "optimizer.lr 1.0 -> 0.3"),
    ("dataset.noise=0.3", "dataset.noise 0.2 -> 0.3"),
    ("optimizer.weight_decay=0.01", "optimizer.weight_decay 0.0 -> 0.01"),
    ("optimizer.schedule=cosine", ("optimizer.schedule 'constant' -> 'cosine'; trainer.epochs "
                                   "2 -> 4")),
    ("trainer.grad=autodiff", "trainer.grad 'manual' -> 'autodiff'"),
]


@pytest.fixture
def two_epochs(checkpointed_run) -> Path:
    return checkpointed_run


@pytest.mark.parametrize(("override", "shown"), CHANGES, ids=[c[0] for c in CHANGES])
def test_a_changed_setting_is_refused_unless_named(make_cfg, tmp_path, two_epochs, override,
                                                   shown):
    resume = f"trainer.resume={two_epochs}"
    with pytest.raises(CheckpointMismatch, match=rf"other settings: {re.escape(shown)}[.;]"):
        train(make_cfg("trainer.epochs=4", resume, override))
    assert not (tmp_path / "run" / "summary.json").exists()
    keys = override.split("=")[0]
    if "schedule" in keys:  # a schedule spans the run: its new length is a change too
        keys += ",trainer.epochs"
    train(make_cfg("trainer.epochs=4", resume, override, f"trainer.resume_changes=[{keys}]"))
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["epoch"] == 4


def test_a_named_learning_rate_change_takes_effect_and_is_recorded(make_cfg, tmp_path, two_epochs,
                                                                   recorded_runs):
    resume = f"trainer.resume={two_epochs}"
    train(make_cfg("trainer.epochs=4", resume, "trainer.checkpoint_every=4",
                   run_dir=tmp_path / "same"))
    train(make_cfg("trainer.epochs=4", resume, "trainer.checkpoint_every=4", "optimizer.lr=0.3",
                   "trainer.resume_changes=[optimizer.lr]", "logger=wandb",
                   run_dir=tmp_path / "changed"))
    # Epochs 3 and 4 ran at lr 0.3: not the unchanged continuation.
    same = load_params(tmp_path / "same" / "params.safetensors")
    changed = load_params(tmp_path / "changed" / "params.safetensors")
    assert not np.allclose(same[0]["W"], changed[0]["W"])
    run = recorded_runs[-1]  # the changed run's
    assert run.config["optimizer"]["lr"] == 0.3
    assert run.config["resume_changes"] == [{"epoch": 2, "key": "optimizer.lr", "old": 1.0,
                                             "new": 0.3}]
    progress = checkpoints.read_progress(CheckpointRef(tmp_path / "changed" / "checkpoints", 4))
    assert progress["resume_changes"][0]["new"] == 0.3


# ---------------------------------------------------------------- Ctrl-C


@pytest.mark.slow
def test_ctrl_c_saves_a_final_checkpoint_and_exits_130(tmp_path):
    run_dir = tmp_path / "run"
    config = ["logger=none", "logger.plots=false", "trainer.progress=false",
              "trainer.epochs=1000000", "trainer.eval_every=1000000", "dataset.n_samples=200",
              "trainer.checkpoint_every=100"]
    # A shell's background job (`pytest &`) ignores SIGINT, and so would the child: not here.
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = train_cli(run_dir, *config, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    finally:
        signal.signal(signal.SIGINT, ignored)
    deadline = time.monotonic() + 120
    while not checkpoints.complete_steps(run_dir / "checkpoints") and time.monotonic() < deadline:
        time.sleep(0.05)  # until training is well under way
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    match = re.search(r"interrupted after epoch (\d+) of 1000000; checkpoint (\S+) saved; "
                      r"continue with trainer.resume=auto", err)
    assert match, err
    epoch = int(match.group(1))
    assert epoch >= 100 and checkpoints.complete_steps(run_dir / "checkpoints")[-1] == epoch
    assert match.group(2) == f"{run_dir / 'checkpoints'}/{epoch}"


def test_multirun_jobs_never_share_a_run_directory(run_command, tmp_path):
    shared = tmp_path / "shared"
    done = run_command(
        "train", "-m", "seed=0,1", f"run_dir={shared}", "logger=none", "logger.plots=false",
        "trainer.progress=false", "trainer.epochs=2", "dataset.n_samples=200",
        f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert done.returncode != 0  # Hydra reports the job that failed
    assert f"{shared} holds an earlier run's outputs" in done.stderr
    summary = json.loads((shared / "summary.json").read_text())
    assert summary["epoch"] == 2  # job 0's outputs, kept
