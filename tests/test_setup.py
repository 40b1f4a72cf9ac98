"""Tests for deltaprop.run.setup: a config becomes a run's data, network, members and directory,
and bad input is refused before anything is written.

In-process, the error is raised before the run directory exists; through the command line
(`python experiments/train.py dataset=csv dataset.path=...`) the user sees one `error:` line,
exit code 2, and no W&B run, checkpoint or output was created before the check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL, compose_config

from deltaprop.cli.teaching import gradcheck_report, worked_example_inputs
from deltaprop.errors import ConfigError
from deltaprop.io.data import DataError
from deltaprop.population import Member, initial_params
from deltaprop.run.config import read
from deltaprop.run.setup import RunSetup, members_of
from deltaprop.run.train import train
from deltaprop.settings import GradcheckSettings


def setup_of(cfg) -> RunSetup:
    return RunSetup.create(read(cfg).training())

# What Hydra itself writes into a job's directory, and the run's lock (deltaprop.io.rundir).
HYDRA_ONLY = {".hydra", "train.log", ".deltaprop.lock"}


def test_a_single_run_is_one_member_and_a_sweep_their_grid(make_cfg, tmp_path):
    single = setup_of(make_cfg("seed=4", "optimizer.lr=0.3"))
    assert single.members == (Member(0, 4, 0.3),)
    assert (single.engine.layout, single.sweep, single.model.sizes) == ("single", False, (2, 4, 1))
    assert single.run_dir == tmp_path / "run" and not single.run_dir.exists()  # created later
    sweep = make_cfg("seed=4", "trainer.num_seeds=2", "sweep.lr=[0.1,1.0]", "sweep.engine=vmap")
    assert [(m.seed, m.lr) for m in members_of(read(sweep))] == [(4, 0.1), (5, 0.1), (4, 1.0),
                                                                 (5, 1.0)]
    setup = setup_of(sweep)
    assert (setup.engine.layout, setup.sweep) == ("vmap", True)
    metadata = setup.checkpoint_metadata()
    assert [m["seed"] for m in metadata["members"]] == [4, 5, 4, 5]
    assert metadata["engine"] == "vmap" and metadata["settings"]["sweep.lr"] == [0.1, 1.0]
    one_lr = setup_of(make_cfg("sweep.lr=[0.5]"))  # a sweep axis: a sweep's outputs
    assert (one_lr.engine.layout, one_lr.sweep, one_lr.members) == ("packed", True,
                                                                    (Member(0, 0, 0.5),))


def test_the_data_seed_is_the_run_seed_unless_dataset_seed_is_set(make_cfg):
    assert read(make_cfg("seed=3")).data_seed == 3
    assert read(make_cfg("seed=3", "dataset.seed=7")).data_seed == 7
    same = setup_of(make_cfg("seed=3", "dataset.seed=7")).splits
    other = setup_of(make_cfg("seed=7")).splits
    np.testing.assert_array_equal(same.x_train, other.x_train)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (["optimizer.lr=-1"], ConfigError, "optimizer.lr=-1.0"),
        (["dataset=csv", "dataset.path=/nonexistent/data.csv"], DataError, "file not found"),
        (["trainer.num_seeds=2", "sweep.lr=[0.1,-1.0]"], ConfigError, "sweep.lr"),
        (["objective=val/accuracy"], ConfigError,
         "objective='val/accuracy' is not a metric this run reports; choose one of"),
        (["trainer.resume_changes=[model.hidden]"], ConfigError,
         "names model.hidden, which cannot change on resume: it changes the state's shapes"),
    ],
)
def test_bad_input_fails_before_the_run_dir_exists(make_cfg, tmp_path, overrides, error,
                                                   message):
    with pytest.raises(error, match=message):
        train(make_cfg(*overrides))
    assert not (tmp_path / "run").exists()


def test_gradient_check_and_worked_example_start_where_training_starts(make_cfg):
    cfg = make_cfg("seed=2", "model.hidden=[3,3]")
    checked = make_cfg("seed=2", "model.hidden=[3,3]", config_name="gradcheck")
    report = gradcheck_report(read(checked, GradcheckSettings))
    assert report.passed and [row.layer for row in report.rows] == [2, 2, 3, 3, 4, 4]
    params, x, y = worked_example_inputs(read(cfg), batch=4)
    start = initial_params(2, [2, 3, 3, 1], "xavier", np.float64)
    assert all(np.array_equal(p[leaf], np.asarray(s[leaf]))
               for p, s in zip(params, start) for leaf in ("W", "b"))
    np.testing.assert_array_equal(x, setup_of(cfg).splits.x_train[:4])
    assert y.shape == (4, 1)
    with pytest.raises(ValueError, match="worked_example.batch=500 must be between 1 and the 84 "):
        worked_example_inputs(read(cfg), batch=500)
    table = make_cfg("dataset=xor_table", "model.hidden=[2,2,2]")
    params, x, y = worked_example_inputs(read(table), batch=4)  # the truth table, not standardized
    assert x.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and y.ravel().tolist() == [0, 1, 1, 0]
    assert [layer["W"].shape for layer in params] == [(2, 2), (2, 2), (2, 2), (2, 1)]


# ---------------------------------------------------------------- bad input, from the command line


def csv_file(directory: Path, text: str, name: str = "data.csv") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def rows(n: int, features: int = 2) -> str:
    """n rows of `features` numeric columns and a balanced 0/1 label."""
    return "".join(
        ",".join(str(0.5 * i + j) for j in range(features)) + f",{i % 2}\n" for i in range(n)
    )


CASES = {  # case: (CSV text or None, overrides, the error line's text)
    "a config value out of range": (None, ["optimizer.lr=-1"], "error: optimizer.lr=-1.0 is invalid"),
    "a missing CSV file": (
        None, ["dataset=csv", "dataset.path={tmp}/missing.csv"],
        "error: dataset.path='{tmp}/missing.csv': file not found",
    ),
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
    "empty dataset": ("a,b,label\n", [], "is empty: 0 rows, 2 feature columns"),
    "empty split": (
        "a,b,label\n" + rows(3),
        [],
        "error: validation split is empty: 3 samples with val_fraction=0.15",
    ),
    "no label column": (
        "a,b,target\n" + rows(10), [], "error: dataset.label='label' is not a column of"
    ),
    "wrong label name given": (
        "a,b,label\n" + rows(10), ["dataset.label=outcome"], "columns are: a, b, label"
    ),
    "feature count differs from the resumed model": (
        "a,b,label\n" + rows(40),
        ["model.hidden=[3]", "trainer.resume={tmp}/three"],
        "its model expects 3 input features (sizes[0]), but the data have 2",
    ),
}


@pytest.fixture(scope="module")
def three_features(tmp_path_factory) -> Path:
    """A checkpointed run of a model trained on three features."""
    tmp = tmp_path_factory.mktemp("bad_csv")
    three = csv_file(tmp, "a,b,c,label\n" + rows(40, 3), "three.csv")
    train(compose_config(*SMALL, "dataset=csv", f"dataset.path={three}", "model.hidden=[3]",
                         "trainer.epochs=1", "trainer.checkpoint_every=1", f"run_dir={tmp / 'three'}"))
    return tmp


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_reported_before_anything_starts(three_features, tmp_path, capsys, case):
    """As deltaprop-train reports it (its body, in this process): exit 2, one `error:` line,
    and nothing started or written: no run directory, no W&B run, no checkpoint."""
    from deltaprop.cli import _train, failing_cleanly

    text, overrides, line = CASES[case]
    data = [] if text is None else ["dataset=csv", f"dataset.path={csv_file(tmp_path, text)}"]
    run_dir = tmp_path / "run"
    cfg = compose_config(*SMALL, f"run_dir={run_dir}", *data, "logger=wandb",
                         "trainer.checkpoint_every=1",
                         *(override.format(tmp=three_features) for override in overrides))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        failing_cleanly(_train)(cfg)
    assert exited.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.count("error:") == 1 and stderr.startswith("error:"), stderr
    assert line.format(tmp=three_features) in stderr
    assert not run_dir.exists()


def test_single_class_training_split_warns_and_trains(make_cfg, tmp_path):
    path = csv_file(tmp_path, "a,b,label\n" + "".join(f"{i},{2 * i},1\n" for i in range(30)))
    with pytest.warns(UserWarning, match=r"training split has a single class \(all 20 labels in "
                                         r"column 'label' are 1\)"):
        train(make_cfg("dataset=csv", f"dataset.path={path}", "trainer.epochs=2"))
    assert (tmp_path / "run" / "params.safetensors").exists()
