"""Bad data through the command line: one clear `error:` line, exit code 2, nothing started.

tests/test_data.py checks each DataError where it is raised; these tests check that the user of
`python experiments/train.py dataset=csv dataset.path=...` sees it, and that no W&B run, checkpoint
or output was created before the check.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
TRAIN_SCRIPT = str(ROOT / "experiments" / "train.py")
HYDRA_ONLY = {".hydra", "train.log"}  # what Hydra itself writes into a job's directory


def run_cli(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "WANDB_MODE": "offline"}
    return subprocess.run(
        [sys.executable, TRAIN_SCRIPT, f"hydra.run.dir={run_dir}", "trainer.progress=false",
         *overrides],
        capture_output=True, text=True, env=env, check=False,
    )


def csv_file(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def rows(n: int, features: int = 2) -> str:
    """n rows of `features` numeric columns and a balanced 0/1 label."""
    return "".join(
        ",".join(str(0.5 * i + j) for j in range(features)) + f",{i % 2}\n" for i in range(n)
    )


def assert_one_clear_error(result: subprocess.CompletedProcess, message: str, run_dir: Path):
    assert result.returncode == 2, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    assert message in error_lines[0], result.stderr
    assert "Traceback" not in result.stderr
    # Nothing was started or written: no W&B run, no checkpoint, no output file.
    assert {path.name for path in run_dir.iterdir()} <= HYDRA_ONLY


CASES = {
    "non-finite feature": (
        "height,weight,label\n1.0,nan,0\n2.0,inf,1\n" + rows(20),
        [],
        "error: features contain non-finite values: column 'weight' has 2 NaN/inf values",
    ),
    "labels outside 0/1": (
        "a,b,label\n1,2,2\n3,4,-1\n5,6,0.5\n" + rows(20),
        [],
        "error: labels must be 0 or 1; found -1, 0.5, 2 in column 'label'",
    ),
    "empty dataset": (
        "a,b,label\n",
        [],
        "is empty: 0 rows, 2 feature columns",
    ),
    "empty split": (
        "a,b,label\n" + rows(3),
        [],
        "error: validation split is empty: 3 samples with val_fraction=0.15",
    ),
    "no label column": (
        "a,b,target\n" + rows(10),
        [],
        "error: dataset.label='label' is not a column of",
    ),
    "wrong label name given": (
        "a,b,label\n" + rows(10),
        ["dataset.label=outcome"],
        "columns are: a, b, label",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_bad_csv_is_reported_before_anything_starts(tmp_path, case):
    text, overrides, message = CASES[case]
    path = csv_file(tmp_path, text)
    run_dir = tmp_path / "run"
    result = run_cli(run_dir, "dataset=csv", f"dataset.path={path}", "logger=wandb",
                     "trainer.checkpoint_every=1", *overrides)
    assert_one_clear_error(result, message, run_dir)


@pytest.mark.slow
def test_feature_count_differs_from_the_model_being_resumed(tmp_path):
    """The model's input size comes from a checkpoint trained on 3 features; the data have 2."""
    three = csv_file(tmp_path, "a,b,c,label\n" + rows(40, 3), "three.csv")
    two = csv_file(tmp_path, "a,b,label\n" + rows(40), "two.csv")
    first = tmp_path / "first"
    trained = run_cli(first, "dataset=csv", f"dataset.path={three}", "logger=none",
                      "trainer.epochs=1", "trainer.checkpoint_every=1", "model.hidden=[3]")
    assert trained.returncode == 0, trained.stderr
    run_dir = tmp_path / "second"
    result = run_cli(run_dir, "dataset=csv", f"dataset.path={two}", "logger=wandb",
                     "trainer.epochs=2", "model.hidden=[3]", f"trainer.resume={first}")
    assert_one_clear_error(
        result, "its model expects 3 input features (sizes[0]), but the data have 2", run_dir
    )


@pytest.mark.slow
def test_single_class_training_split_warns_and_trains(tmp_path):
    path = csv_file(tmp_path, "a,b,label\n" + "".join(f"{i},{2 * i},1\n" for i in range(30)))
    result = run_cli(tmp_path / "run", "dataset=csv", f"dataset.path={path}", "logger=none",
                     "trainer.epochs=2")
    assert result.returncode == 0, result.stderr
    assert "UserWarning: training split has a single class (all 20 labels in column 'label' " \
           "are 1)" in result.stderr
    assert (tmp_path / "run" / "params.safetensors").exists()
