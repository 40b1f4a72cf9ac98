"""Tests for deltaprop.checkpointing and the checkpoint/resume path of trainer.train.

Exact resume is checked bit for bit: final parameters (params.safetensors) and the metrics history
of a resumed run equal those of an uninterrupted run of the same config, in-process (a half-written
checkpoint left behind) and through the command line (a run killed with SIGKILL mid-training).
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import deltaprop.config  # noqa: F401  (registers the structured config schema)
from deltaprop import checkpointing
from deltaprop.checkpointing import CheckpointError, CheckpointRef
from deltaprop.serialization import load_params
from deltaprop.trainer import train

ROOT = Path(__file__).parents[1]
CONF = str(ROOT / "conf")
TRAIN_SCRIPT = str(ROOT / "experiments" / "train.py")

SMALL = [
    "logger=none",
    "logger.log_gradcheck=false",
    "trainer.progress=false",
    "dataset.n_samples=120",
    "model.hidden=[4]",
    "trainer.batch_size=16",
    "trainer.eval_every=2",
]


def make_cfg(run_dir: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=[*SMALL, f"run_dir={run_dir}", *overrides])


def assert_same_params(path_a: Path, path_b: Path) -> None:
    params_a, params_b = load_params(path_a), load_params(path_b)
    assert len(params_a) == len(params_b)
    for layer_a, layer_b in zip(params_a, params_b, strict=True):
        for leaf in ("W", "b"):
            assert layer_a[leaf].dtype == layer_b[leaf].dtype
            assert np.array_equal(layer_a[leaf], layer_b[leaf]), leaf


class Evil:
    """Unpickling this creates a file: proof that a loader did (or did not) unpickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


# ---------------------------------------------------------------- saving and retention


def test_retention_keeps_the_newest(tmp_path):
    train(make_cfg(tmp_path / "run", "trainer.epochs=5", "trainer.checkpoint_every=1",
                   "trainer.keep_checkpoints=2"))
    root = tmp_path / "run" / "checkpoints"
    assert checkpointing.complete_steps(root) == [4, 5]
    assert sorted(child.name for child in root.iterdir() if child.is_dir()) == ["4", "5"]


def test_final_epoch_is_saved_off_the_interval(tmp_path):
    train(make_cfg(tmp_path / "run", "trainer.epochs=5", "trainer.checkpoint_every=2"))
    root = tmp_path / "run" / "checkpoints"
    assert checkpointing.complete_steps(root) == [2, 4, 5]  # keep_checkpoints=3
    metadata = checkpointing.read_metadata(CheckpointRef(root, 5))
    assert metadata["sizes"] == [2, 4, 1]
    assert metadata["dataset"] == "moons" and metadata["n_features"] == 2
    assert metadata["optimizer"] == "sgd" and metadata["precision"] == "float32"


def test_no_checkpoints_when_off(tmp_path):
    train(make_cfg(tmp_path / "run", "trainer.epochs=2"))
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---------------------------------------------------------------- exact resume


@pytest.mark.slow
def test_resume_auto_skips_half_written_checkpoints_and_is_exact(tmp_path):
    """Steps 1..6 saved; 4..6 and the outputs then lost, junk left as a kill would leave it."""
    overrides = ["trainer.epochs=6", "trainer.checkpoint_every=1", "trainer.keep_checkpoints=10",
                 "optimizer=adam", "optimizer.lr=0.05", "optimizer.schedule=cosine"]
    run_dir = tmp_path / "run"
    train(make_cfg(run_dir, *overrides))
    reference = tmp_path / "reference"
    reference.mkdir()
    for name in ("params.safetensors", "metrics.jsonl", "summary.json"):
        shutil.move(run_dir / name, reference / name)
    root = run_dir / "checkpoints"
    for step in (4, 5, 6):
        shutil.rmtree(root / str(step))
    # A save killed before its rename, and a step directory without its commit marker.
    shutil.copytree(root / "3", root / "4.orbax-checkpoint-tmp-1700000000")
    shutil.copytree(root / "3", root / "5")
    (root / "5" / checkpointing.COMMIT_MARKER).unlink()
    assert checkpointing.complete_steps(root) == [1, 2, 3]

    train(make_cfg(run_dir, *overrides, "trainer.resume=auto"))

    assert_same_params(run_dir / "params.safetensors", reference / "params.safetensors")
    assert (run_dir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    assert checkpointing.complete_steps(root) == [1, 2, 3, 4, 5, 6]
    assert not any("tmp" in child.name for child in root.iterdir())


@pytest.mark.slow
def test_resume_from_a_step_directory_of_another_run(tmp_path, capsys):
    train(make_cfg(tmp_path / "full", "trainer.epochs=4"))
    train(make_cfg(tmp_path / "first", "trainer.epochs=4", "trainer.checkpoint_every=2"))
    step = tmp_path / "first" / "checkpoints" / "2"
    train(make_cfg(tmp_path / "second", "trainer.epochs=4", f"trainer.resume={step}"))
    assert f"resuming from {step} (epoch 2 of 4)" in capsys.readouterr().out
    assert_same_params(tmp_path / "second" / "params.safetensors",
                       tmp_path / "full" / "params.safetensors")


def test_resume_auto_without_checkpoint_starts_fresh(tmp_path, capsys):
    train(make_cfg(tmp_path / "run", "trainer.epochs=2", "trainer.checkpoint_every=1",
                   "trainer.resume=auto"))
    assert "no complete checkpoint" in capsys.readouterr().out
    assert checkpointing.complete_steps(tmp_path / "run" / "checkpoints") == [1, 2]


def test_fresh_run_refuses_to_mix_with_existing_checkpoints(tmp_path):
    train(make_cfg(tmp_path / "run", "trainer.epochs=2", "trainer.checkpoint_every=1"))
    with pytest.raises(CheckpointError, match="already holds checkpoints .* trainer.resume=auto"):
        train(make_cfg(tmp_path / "run", "trainer.epochs=4", "trainer.checkpoint_every=1"))


def test_checkpoint_past_the_last_epoch_is_refused(tmp_path):
    train(make_cfg(tmp_path / "run", "trainer.epochs=3", "trainer.checkpoint_every=3"))
    with pytest.raises(CheckpointError, match="at epoch 3, past trainer.epochs=2"):
        train(make_cfg(tmp_path / "other", "trainer.epochs=2",
                       f"trainer.resume={tmp_path / 'run'}"))


# ---------------------------------------------------------------- refusals


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("saved") / "run"
    train(make_cfg(run_dir, "trainer.epochs=2", "trainer.checkpoint_every=2"))
    return run_dir


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.hidden=[5]", "it has layer sizes [2, 4, 1], but this run has [2, 5, 1]"),
        ("dataset=circles", "it has dataset 'moons', but this run has 'circles'"),
        ("optimizer=adam", "it has optimizer 'sgd', but this run has 'adam'"),
        ("trainer.precision=float64", "it has precision 'float32', but this run has 'float64'"),
    ],
)
def test_mismatched_checkpoint_is_refused(tmp_path, saved_run, override, message):
    cfg = make_cfg(tmp_path / "run", "trainer.epochs=4", f"trainer.resume={saved_run}", override)
    with pytest.raises(CheckpointError, match="does not match this run") as error:
        train(cfg)
    assert message in str(error.value)
    assert not (tmp_path / "run" / "params.safetensors").exists()


def test_feature_count_mismatch_names_both():
    found = {"format": checkpointing.FORMAT, "dataset": "csv", "n_features": 3}
    expected = {**found, "n_features": 2}
    with pytest.raises(CheckpointError, match=r"its model expects 3 input features \(sizes\[0\]\), "
                                              r"but the data have 2"):
        checkpointing.check_compatible(found, expected, Path("ckpt"))


def test_pickle_file_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.bin"
    evil.write_bytes(pickle.dumps(Evil(marker)))
    with pytest.raises(CheckpointError, match="is a pickle-like file, not an orbax checkpoint"):
        train(make_cfg(tmp_path / "run", f"trainer.resume={evil}"))
    assert not marker.exists()


def test_directory_of_pickles_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "old_run"
    folder.mkdir()
    (folder / "checkpoint.pkl").write_bytes(pickle.dumps(Evil(marker)))
    with pytest.raises(CheckpointError, match=r"no complete orbax checkpoint \(found "
                                              r"checkpoint.pkl: pickle-like files are never"):
        train(make_cfg(tmp_path / "run", f"trainer.resume={folder}"))
    assert not marker.exists()


def test_crafted_step_directory_holding_pickles_is_refused(tmp_path):
    """Looks complete (name, commit marker, item dirs) but holds pickles: read as orbax, fails."""
    marker = tmp_path / "pwned"
    step = tmp_path / "checkpoints" / "7"
    for item in ("state", "progress", "meta"):
        (step / item).mkdir(parents=True)
        (step / item / "metadata").write_bytes(pickle.dumps(Evil(marker)))
    (step / checkpointing.COMMIT_MARKER).write_text("ok")
    assert checkpointing.find_checkpoint(tmp_path) == CheckpointRef(tmp_path / "checkpoints", 7)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        train(make_cfg(tmp_path / "run", f"trainer.resume={tmp_path}"))
    assert not marker.exists()


def test_missing_and_unfinished_paths(tmp_path):
    with pytest.raises(CheckpointError, match="no such file or directory"):
        checkpointing.find_checkpoint(tmp_path / "nowhere")
    unfinished = tmp_path / "3.orbax-checkpoint-tmp-17"
    unfinished.mkdir()
    with pytest.raises(CheckpointError, match="never finished"):
        checkpointing.find_checkpoint(unfinished)


# ---------------------------------------------------------------- W&B


@pytest.mark.slow
def test_resumed_run_continues_the_same_wandb_run(tmp_path):
    run_dir = tmp_path / "run"
    common = ["logger=wandb", "logger.mode=offline", "trainer.checkpoint_every=1"]
    train(make_cfg(run_dir, *common, "trainer.epochs=2"))
    train(make_cfg(run_dir, *common, "trainer.epochs=3", "trainer.resume=auto"))
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    run_ids = {path.name.rsplit("-", 1)[-1] for path in runs}
    assert len(run_ids) == 1, runs


# ---------------------------------------------------------------- SIGKILL, then resume (CLI)


def _cli(run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, TRAIN_SCRIPT, f"run_dir={run_dir}", *overrides]


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_is_bit_identical(tmp_path):
    epochs = 40
    config = ["logger=none", "trainer.progress=false", "dataset.n_samples=200",
              f"trainer.epochs={epochs}", "trainer.eval_every=5", "trainer.checkpoint_every=1",
              "optimizer=adam", "optimizer.lr=0.02", "model.hidden=[8,8]"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    killed, uninterrupted = tmp_path / "killed", tmp_path / "uninterrupted"
    reference = subprocess.Popen(_cli(uninterrupted, *config), env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(tmp_path / "killed.log", "w") as log:
        victim = subprocess.Popen(_cli(killed, *config), env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 300
        while victim.poll() is None and time.monotonic() < deadline:
            if len(checkpointing.complete_steps(killed / "checkpoints")) >= 2:
                break
            time.sleep(0.02)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
    assert victim.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
    assert not (killed / "params.safetensors").exists()
    steps = checkpointing.complete_steps(killed / "checkpoints")
    assert steps and steps[-1] < epochs
    print(f"killed after {steps[-1]} of {epochs} epochs; complete checkpoints: {steps}")

    resumed = subprocess.run(_cli(killed, *config, "trainer.resume=auto"), env=env,
                             capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout
    assert reference.wait() == 0

    assert_same_params(killed / "params.safetensors", uninterrupted / "params.safetensors")
    assert (killed / "metrics.jsonl").read_text() == (uninterrupted / "metrics.jsonl").read_text()
