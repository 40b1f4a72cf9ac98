"""Tests for deltaprop.io.checkpoints: what a checkpoint holds, and every checkpoint refused.

A checkpoint of another architecture, dataset, optimizer, precision, member set or engine is
refused naming the difference; nothing is ever unpickled. (Saving, retention and exact resume
through the training loop are in test_loop.py.)
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from conftest import SWEEP

from deltaprop.io import checkpoints
from deltaprop.io.checkpoints import CheckpointError, CheckpointMismatch, CheckpointRef
from deltaprop.run.train import train


class Evil:
    """Unpickling this creates a file: proof that a loader did (or did not) unpickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_metadata_names_the_run(make_cfg, tmp_path):
    train(make_cfg("trainer.epochs=5", "trainer.checkpoint_every=2"))
    metadata = checkpoints.read_metadata(CheckpointRef(tmp_path / "run" / "checkpoints", 5))
    assert metadata["sizes"] == [2, 4, 1]
    assert metadata["dataset"] == "moons" and metadata["n_features"] == 2
    assert metadata["optimizer"] == "sgd" and metadata["precision"] == "float32"
    assert metadata["members"] == [{"index": 0, "seed": 0, "lr": 1.0, "weight_decay": 0.0,
                                    "momentum": None, "init_scale": 1.0}]
    assert metadata["engine"] == "single" and len(metadata["digest"]) == 64
    assert metadata["settings"]["trainer.epochs"] == 5 and len(metadata["data"]) == 64


# ---------------------------------------------------------------- refusals


def test_the_progress_record_round_trips_non_finite_floats_exactly(tmp_path):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from deltaprop.training import TrainState

    state = TrainState({"w": jnp.ones(2)}, {}, jax.random.key(0), jnp.asarray(1))
    progress = {"members": [{"history": [{"epoch": 1, "a": float("inf"), "b": float("-inf"),
                                          "c": float("nan"), "d": 0.5}],
                             "best": float("inf"), "run_id": "float", "group": None}]}
    manager = checkpoints.open_manager(tmp_path, keep=1)
    checkpoints.save_checkpoint(manager, state, 1, progress, {"format": checkpoints.FORMAT})
    manager.wait_until_finished()
    manager.close()
    text = "".join(path.read_text() for path in (tmp_path / "1" / "progress").rglob("*")
                   if path.is_file())
    assert "NaN" not in text and "Infinity" not in text  # strict JSON on disk
    _, restored, _ = checkpoints.restore_checkpoint(CheckpointRef(tmp_path, 1), state,
                                                    {"format": checkpoints.FORMAT})
    row = restored["members"][0]["history"][0]
    assert (row["a"], row["b"], row["d"]) == (np.inf, -np.inf, 0.5) and np.isnan(row["c"])
    assert restored["members"][0]["best"] == np.inf and restored["members"][0]["run_id"] == "float"




@pytest.fixture
def saved_runs(checkpointed_run, checkpointed_sweep) -> dict[str, Path]:
    """A single run and a sweep, two epochs each, checkpointed at the end."""
    return {"single": checkpointed_run, "sweep": checkpointed_sweep}


@pytest.mark.parametrize(
    ("saved", "overrides", "message"),
    [
        ("single", ["model.hidden=[5]"], "it has layer sizes [2, 4, 1], but this run has [2, 5, 1]"),
        ("single", ["dataset=circles"], "it has dataset 'moons', but this run has 'circles'"),
        ("single", ["optimizer=adam"], "it has optimizer 'sgd', but this run has 'adam'"),
        ("single", ["trainer.precision=float64"],
         "it has precision 'float32', but this run has 'float64'"),
        ("single", SWEEP, "it has engine 'single', but this run has 'packed'"),
        ("sweep", ["trainer.num_seeds=3", "sweep.lr=[0.5,1.0]"],
         "it has members 4, but this run has 6"),
        ("sweep", [*SWEEP, "sweep.engine=vmap"], "it has engine 'packed', but this run has 'vmap'"),
    ],
)
def test_mismatched_checkpoint_is_refused(make_cfg, tmp_path, saved_runs, saved, overrides,
                                          message):
    cfg = make_cfg("trainer.epochs=4", f"trainer.resume={saved_runs[saved]}", *overrides)
    with pytest.raises(CheckpointMismatch, match="does not match this run") as error:
        train(cfg)
    assert message in str(error.value)
    assert not (tmp_path / "run" / "params.safetensors").exists()
    assert not (tmp_path / "run" / "members.csv").exists()


def test_feature_count_mismatch_names_both():
    found = {"format": checkpoints.FORMAT, "dataset": "csv", "n_features": 3}
    expected = {**found, "n_features": 2}
    with pytest.raises(CheckpointError, match=r"its model expects 3 input features \(sizes\[0\]\), "
                                              r"but the data have 2"):
        checkpoints.check_compatible(found, expected, Path("ckpt"))


def test_pickle_file_is_refused_without_unpickling(make_cfg, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.bin"
    evil.write_bytes(pickle.dumps(Evil(marker)))
    with pytest.raises(CheckpointError, match="is a pickle-like file, not an orbax checkpoint"):
        train(make_cfg(f"trainer.resume={evil}"))
    assert not marker.exists()


def test_directory_of_pickles_is_refused(make_cfg, tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "old_run"
    folder.mkdir()
    (folder / "checkpoint.pkl").write_bytes(pickle.dumps(Evil(marker)))
    with pytest.raises(CheckpointError, match=r"no complete orbax checkpoint \(found "
                                              r"checkpoint.pkl: pickle-like files are never"):
        train(make_cfg(f"trainer.resume={folder}"))
    assert not marker.exists()


def test_crafted_step_directory_holding_pickles_is_refused(make_cfg, tmp_path):
    """Looks complete (name, commit marker, item dirs) but holds pickles: read as orbax, fails."""
    marker = tmp_path / "pwned"
    step = tmp_path / "checkpoints" / "7"
    for item in ("state", "progress", "meta"):
        (step / item).mkdir(parents=True)
        (step / item / "metadata").write_bytes(pickle.dumps(Evil(marker)))
    (step / checkpoints.COMMIT_MARKER).write_text("ok")
    assert checkpoints.find_checkpoints(tmp_path) == [CheckpointRef(tmp_path / "checkpoints", 7)]
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        train(make_cfg(f"trainer.resume={tmp_path}"))
    assert not marker.exists()


def test_missing_and_unfinished_paths(tmp_path):
    with pytest.raises(CheckpointError, match="no such file or directory"):
        checkpoints.find_checkpoints(tmp_path / "nowhere")
    unfinished = tmp_path / "3.orbax-checkpoint-tmp-17"
    unfinished.mkdir()
    with pytest.raises(CheckpointError, match="never finished"):
        checkpoints.find_checkpoints(unfinished)
