"""predict_from_config(cfg): a trained run's model on new data, its files, and every bad input
refused with one line before anything is written; and the metadata training leaves for it.

One tiny moons run (and one two-member sweep) is trained per module; the CSV files hold raw,
unstandardized points of the same distribution under the run's feature names x1, x2.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CHECKPOINTED, SMALL, compose_config

import deltaprop
from deltaprop.errors import InputError
from deltaprop.io.data import DataError, load_dataset, preprocessing_metadata
from deltaprop.io.files import load_params, load_params_and_metadata, save_params
from deltaprop.metrics import roc_auc
from deltaprop.run.config import read
from deltaprop.run.predict import PredictError, predict_from_config
from deltaprop.run.setup import prepare_data


def _train(directory, *overrides):
    cfg = compose_config(*SMALL, f"run_dir={directory}", *overrides)
    deltaprop.train(cfg)
    return cfg


@pytest.fixture
def trained(checkpointed_run):
    """(run dir, its config) of a finished single run on moons."""
    return checkpointed_run, compose_config(*CHECKPOINTED, f"run_dir={checkpointed_run}")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The directory of a finished two-member sweep on moons."""
    directory = tmp_path_factory.mktemp("sweep") / "run"
    _train(directory, "trainer.num_seeds=2")
    return directory


@pytest.fixture(scope="module")
def points():
    """(x (40, 2), y (40, 1)): raw moons points the run has not seen (another data seed)."""
    data = load_dataset(compose_config(*SMALL, "dataset.n_samples=40").dataset, seed=7)
    return data.x, data.y


def write_table(path, header, rows):
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_predictions(path):
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    return (np.array([float(row["probability_label"]) for row in rows]),
            np.array([int(row["predicted_label"]) for row in rows]), list(rows[0]))


def expected_probabilities(trained, x):
    """σ(z_L) of the saved params on x standardized with the training split's own statistics,
    recomputed from the training config (not read from the file's metadata)."""
    run_dir, cfg = trained
    params = load_params(run_dir / "params.safetensors")
    standardized = prepare_data(read(cfg)).standardizer.transform(x)
    dtype = params[0]["W"].dtype
    return np.asarray(deltaprop.predict_proba(params, jnp.asarray(standardized, dtype)))[:, 0]


# ---------------------------------------------------------------- what training saves


def test_params_metadata_round_trips_as_json(tmp_path):
    params = [{"W": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}]
    extra = {"feature_names": ["a", "b"], "standardizer": {"mean": [0.1, 1 / 3], "std": [2.0, 1e-7]}}
    loaded, metadata = load_params_and_metadata(save_params(params, tmp_path / "p.safetensors",
                                                            extra))
    assert metadata == {"sizes": [2, 3], **extra}  # floats round-trip exactly through JSON
    assert loaded[0]["W"].shape == (2, 3)
    with pytest.raises(ValueError, match="'sizes' is reserved"):
        save_params(params, tmp_path / "q.safetensors", {"sizes": [1]})


def test_training_saves_feature_names_and_standardizer(trained):
    run_dir, cfg = trained
    expected = preprocessing_metadata(prepare_data(read(cfg)))
    assert expected["feature_names"] == ["x1", "x2"] and expected["label_names"] == ["label"]
    metadata = load_params_and_metadata(run_dir / "params.safetensors")[1]
    assert {key: metadata[key] for key in expected} == expected


def test_sweep_members_save_feature_names_and_standardizer(trained, sweep, predict_cfg):
    expected = preprocessing_metadata(prepare_data(read(trained[1])))  # same data, same split
    metadata = load_params_and_metadata(sweep / "members" / "member_1" / "params.safetensors")[1]
    assert {key: metadata[key] for key in expected} == expected


@pytest.fixture
def predict_cfg(tmp_path):
    """(*overrides, run_dir=tmp_path / "predict") -> deltaprop-predict's config."""

    def make(*overrides: str, run_dir: Path | None = None):
        run_dir = tmp_path / "predict" if run_dir is None else run_dir
        return compose_config(f"run_dir={run_dir}", *overrides, config_name="predict")

    return make


# ---------------------------------------------------------------- predictions


def test_csv_with_labels_gives_predictions_and_metrics(trained, points, make_cfg, tmp_path, predict_cfg):
    x, y = points
    path = write_table(tmp_path / "new.csv", ["x1", "label", "x2"],  # label anywhere
                       np.column_stack([x[:, 0], y[:, 0], x[:, 1]]).tolist())
    out = tmp_path / "predict"
    metrics = predict_from_config(predict_cfg(f"run={trained[0]}", "dataset=csv",
                                           f"dataset.path={path}", run_dir=out))

    probabilities, predicted, columns = read_predictions(out / "predictions.csv")
    assert columns == ["probability_label", "predicted_label"]
    assert probabilities.shape == (len(x),)
    np.testing.assert_allclose(probabilities, expected_probabilities(trained, x), atol=1e-6)
    np.testing.assert_array_equal(predicted, probabilities > 0.5)
    assert set(metrics) == {"predict/loss", "predict/acc", "predict/auc"}
    assert metrics["predict/acc"] == pytest.approx(np.mean(predicted == y[:, 0]), abs=1e-6)
    assert metrics["predict/auc"] == pytest.approx(roc_auc(y, probabilities), abs=1e-6)
    p = np.clip(probabilities, 1e-7, 1 - 1e-7)
    bce = -np.mean(y[:, 0] * np.log(p) + (1 - y[:, 0]) * np.log(1 - p))
    assert metrics["predict/loss"] == pytest.approx(bce, rel=1e-4)
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics)


def test_csv_without_labels_gives_predictions_only(trained, points, make_cfg, tmp_path, capsys, predict_cfg):
    x, _ = points
    path = write_table(tmp_path / "new.csv", ["x1", "x2"], x.tolist())
    out = tmp_path / "predict"
    metrics = predict_from_config(predict_cfg(f"run={trained[0]}", "dataset=csv",
                                           f"dataset.path={path}", run_dir=out))
    assert metrics == {}
    assert not (out / "metrics.json").exists()
    probabilities, _, _ = read_predictions(out / "predictions.csv")
    np.testing.assert_allclose(probabilities, expected_probabilities(trained, x), atol=1e-6)
    said = capsys.readouterr().out
    assert "no metrics: the data have no label column 'label'" in said
    assert f"predictions: {(out / 'predictions.csv').resolve()}" in said


def test_synthetic_dataset_is_predicted_whole(trained, make_cfg, tmp_path, predict_cfg):
    """dataset=moons: every generated example (not only the test split), with its labels."""
    cfg = predict_cfg(f"run={trained[0]}", "dataset=moons", "dataset.n_samples=30", "seed=5",
                      run_dir=tmp_path / "p")
    metrics = predict_from_config(cfg)
    probabilities, _, _ = read_predictions(tmp_path / "p" / "predictions.csv")
    data = load_dataset(cfg.dataset, 5)
    np.testing.assert_allclose(probabilities, expected_probabilities(trained, data.x), atol=1e-6)
    assert metrics["predict/acc"] == pytest.approx(
        np.mean((probabilities > 0.5) == data.y[:, 0]), abs=1e-6)


def test_sweep_member_is_predicted_with_its_own_params(sweep, make_cfg, tmp_path, predict_cfg):
    member = sweep / "members" / "member_1"
    metrics = predict_from_config(predict_cfg(f"run={member}", run_dir=tmp_path / "p"))
    assert set(metrics) == {"predict/loss", "predict/acc", "predict/auc"}


# ---------------------------------------------------------------- bad input: one line, no files


def _refused(predict_cfg, tmp_path, *overrides, error=InputError):
    out = tmp_path / "predict"
    with pytest.raises(error) as caught:
        predict_from_config(predict_cfg(*overrides, run_dir=out))
    assert "\n" not in str(caught.value)
    assert not out.exists()  # refused before anything was written
    return str(caught.value)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (["x1", "height"], r"missing \['x2'\], unexpected \['height'\]"),
        (["x1"], r"x has shape \(3, 1\), the model takes \(N, 2\)"),
        (["x1", "x2", "x3"], r"x has shape \(3, 3\), the model takes \(N, 2\)"),
        (["x2", "x1"], "the same columns in another order"),
    ],
    ids=["names", "too-few", "too-many", "order"],
)
def test_features_that_do_not_fit_the_run_are_refused(trained, make_cfg, tmp_path, header,
                                                      expected, predict_cfg):
    path = write_table(tmp_path / "new.csv", header, [[0.5] * len(header)] * 3)
    message = _refused(predict_cfg, tmp_path, f"run={trained[0]}", "dataset=csv",
                       f"dataset.path={path}", error=PredictError)
    assert f"features {header!r}" in message and "trained on 2 features ['x1', 'x2']" in message
    assert re.search(expected, message), message


def test_nan_feature_is_refused_naming_the_column(trained, make_cfg, tmp_path, predict_cfg):
    path = write_table(tmp_path / "new.csv", ["x1", "x2"], [[0.1, 0.2], [0.3, "nan"]])
    message = _refused(predict_cfg, tmp_path, f"run={trained[0]}", "dataset=csv",
                       f"dataset.path={path}", error=DataError)
    assert "column 'x2' has 1 NaN/inf values" in message


def test_missing_or_unfinished_run_is_refused(predict_cfg, tmp_path):
    assert "no such directory" in _refused(predict_cfg, tmp_path, f"run={tmp_path / 'absent'}")
    assert "run=None: name the training run" in _refused(predict_cfg, tmp_path)
    (tmp_path / "empty").mkdir()
    assert "has no params.safetensors" in _refused(predict_cfg, tmp_path, f"run={tmp_path / 'empty'}")


def test_sweep_directory_is_refused_naming_its_members(sweep, make_cfg, tmp_path, predict_cfg):
    message = _refused(predict_cfg, tmp_path, f"run={sweep}", error=PredictError)
    assert f"run={sweep / 'members' / 'member_<i>'}" in message
    assert "(members: member_0..member_1)" in message


def test_params_saved_without_standardizer_ask_for_retraining(trained, make_cfg, tmp_path, predict_cfg):
    old = tmp_path / "old"
    old.mkdir()
    save_params(load_params(trained[0] / "params.safetensors"), old / "params.safetensors")
    message = _refused(predict_cfg, tmp_path, f"run={old}", error=PredictError)
    assert "trained before deltaprop saved its standardizer; retrain" in message


def test_metadata_that_disagree_with_the_weights_are_refused(trained, make_cfg, tmp_path, predict_cfg):
    bad = tmp_path / "bad"
    bad.mkdir()
    params, metadata = load_params_and_metadata(trained[0] / "params.safetensors")
    metadata = {key: value for key, value in metadata.items() if key != "sizes"}
    metadata["standardizer"]["std"] = [1.0]  # one feature's std for a two-input network
    save_params(params, bad / "params.safetensors", metadata)
    message = _refused(predict_cfg, tmp_path, f"run={bad}", error=PredictError)
    assert "mean (2,) and std (1,)" in message and "sizes [2, 4, 1]" in message


# ---------------------------------------------------------------- the command line


def test_command_line_predicts_then_exits_2_on_bad_input(trained, points, run_command, tmp_path):
    x, y = points
    good = write_table(tmp_path / "good.csv", ["x1", "x2", "label"], np.hstack([x, y]).tolist())
    result = run_command("predict", f"run={trained[0]}", "dataset=csv", f"dataset.path={good}",
                         f"hydra.run.dir={tmp_path / 'good'}")
    assert result.returncode == 0, result.stderr
    assert "predict/acc" in result.stdout + result.stderr
    assert (tmp_path / "good" / "predictions.csv").is_file()
    assert (tmp_path / "good" / "metrics.json").is_file()

    bad = write_table(tmp_path / "bad.csv", ["x1", "height"], x.tolist())
    result = run_command("predict", f"run={trained[0]}", "dataset=csv", f"dataset.path={bad}",
                         f"hydra.run.dir={tmp_path / 'bad'}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "'height'" in lines[0], lines
    assert not (tmp_path / "bad" / "predictions.csv").exists()


def test_a_tanh_mse_run_is_applied_with_its_own_activation(make_cfg, tmp_path, predict_cfg):
    """The parameter file says how to apply the network: predictions use its activation."""
    from deltaprop.io.data import load_prediction_data
    from deltaprop.network import predict_proba
    from deltaprop.run.predict import load_model

    run = tmp_path / "tanh"
    deltaprop.train(make_cfg("model.activation=tanh", "loss=mse", run_dir=run))
    loaded = load_model(run / "params.safetensors")
    params, standardizer = loaded.params, loaded.standardizer
    assert loaded.model.names == {"loss": "mse", "activation": "tanh"}
    out = tmp_path / "predicted"
    metrics = predict_from_config(predict_cfg(f"run={run}", run_dir=out))
    cfg = make_cfg()
    x = standardizer.transform(load_prediction_data(cfg.dataset, read(cfg).data_seed, ("label",)).x)
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    got = np.array([float(row["probability_label"]) for row in rows])
    np.testing.assert_allclose(got, np.asarray(predict_proba(params, x, activation="tanh"))[:, 0],
                               rtol=1e-6, atol=1e-7)
    assert not np.allclose(got, np.asarray(predict_proba(params, x))[:, 0], atol=1e-3)
    assert 0 < metrics["predict/loss"] < 0.2  # the mean ½(a − y)² of the run's cost: below ⅛


# ---------------------------------------------------------------- several label columns

MULTI_LABELS = ("a", "b", "c")


def write_multi_label_csv(path, n=120, seed=0):
    """x1, x2, x3 Gaussian; a = [x1 > 0], b = [x2 > 0], c = [x1 + x3 > 0], interleaved."""
    x = np.random.default_rng(seed).normal(size=(n, 3))
    a, b, c = (x[:, 0] > 0), (x[:, 1] > 0), (x[:, 0] + x[:, 2] > 0)
    columns = [x[:, 0], a, x[:, 1], b, x[:, 2], c]
    return write_table(path, ["x1", "a", "x2", "b", "x3", "c"],
                       np.column_stack(columns).astype(float).tolist())


@pytest.fixture(scope="module")
def multi_label(tmp_path_factory):
    """(run dir, CSV path) of a single run trained on three label columns, 6 epochs."""
    directory = tmp_path_factory.mktemp("multi_label")
    path = write_multi_label_csv(directory / "labels.csv")
    _train(directory / "run", "dataset=csv", f"dataset.path={path}", "dataset.label=[a,b,c]",
           "trainer.epochs=6", "optimizer.lr=2.0")
    return directory / "run", path


def test_a_label_list_trains_one_output_per_column_with_metrics_per_output(multi_label):
    run_dir, _ = multi_label
    metadata = load_params_and_metadata(run_dir / "params.safetensors")[1]
    assert metadata["sizes"][-1] == 3 and metadata["label_names"] == list(MULTI_LABELS)
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in history:
        for split in ("train", "val"):
            per_output = [row[f"{split}/acc/{name}"] for name in MULTI_LABELS]
            assert row[f"{split}/acc"] == pytest.approx(np.mean(per_output), abs=1e-6)
            aucs = [row[f"{split}/auc/{name}"] for name in MULTI_LABELS]
            assert row[f"{split}/auc"] == pytest.approx(np.mean(aucs), rel=1e-12)
    # each output learns its own column: a = [x1 > 0] is one linear cut
    assert history[-1]["val/auc/a"] > 0.9 and history[-1]["val/auc"] > 0.8
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {"val/auc/c", "test/auc", "test/acc"} <= set(summary)


def test_a_multi_label_model_predicts_one_probability_per_output(multi_label, make_cfg,
                                                                  tmp_path, predict_cfg):
    run_dir, path = multi_label
    out = tmp_path / "predict"
    metrics = predict_from_config(predict_cfg(f"run={run_dir}", "dataset=csv",
                                           f"dataset.path={path}", run_dir=out))
    with open(out / "predictions.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == [f"probability_{k}" for k in MULTI_LABELS] + [
        f"predicted_{k}" for k in MULTI_LABELS]
    probabilities = np.array([[float(row[f"probability_{k}"]) for k in MULTI_LABELS]
                              for row in rows])
    predicted = np.array([[int(row[f"predicted_{k}"]) for k in MULTI_LABELS] for row in rows])
    np.testing.assert_array_equal(predicted, probabilities > 0.5)
    data = load_dataset(make_cfg("dataset=csv", f"dataset.path={path}",
                                 "dataset.label=[a,b,c]").dataset, 0)
    for j, name in enumerate(MULTI_LABELS):
        assert metrics[f"predict/acc/{name}"] == pytest.approx(
            np.mean(predicted[:, j] == data.y[:, j]), abs=1e-9)
        assert metrics[f"predict/auc/{name}"] == pytest.approx(
            roc_auc(data.y[:, j], probabilities[:, j]), abs=1e-6)
    assert metrics["predict/auc"] == pytest.approx(
        np.mean([metrics[f"predict/auc/{k}"] for k in MULTI_LABELS]), rel=1e-12)
    unlabelled = write_table(tmp_path / "x.csv", ["x1", "x2", "x3"], data.x.tolist())
    assert predict_from_config(predict_cfg(f"run={run_dir}", "dataset=csv",
                                        f"dataset.path={unlabelled}", run_dir=tmp_path / "p2")) == {}


def test_a_multi_label_sweep_carries_the_per_output_metrics(make_cfg, tmp_path, recorded_runs):
    """members.csv, the sweep summary and every member's W&B run get the per-output keys."""
    path = write_multi_label_csv(tmp_path / "labels.csv")
    deltaprop.train(make_cfg("dataset=csv", f"dataset.path={path}", "dataset.label=[a,b,c]",
                             "trainer.num_seeds=2", "logger=wandb"))
    with open(tmp_path / "run" / "members.csv", newline="") as file:
        members = list(csv.DictReader(file))
    assert len(members) == 2 and {"val/auc/a", "train/acc/c", "val/auc"} <= set(members[0])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "val/auc/b" in summary
    logged = [keys for run in recorded_runs for _, keys in run.steps]
    assert len(recorded_runs) >= 2 and any("val/acc" in keys for keys in logged)
    assert all("val/acc/b" in keys and "val/auc/c" in keys for keys in logged
                          if "val/acc" in keys)
