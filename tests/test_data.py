"""Tests for deltaprop.io.data: loaders, validation errors, splits and standardization."""

from __future__ import annotations

import re
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.datasets import load_digits

from deltaprop.errors import ConfigError
from deltaprop.io.data import (
    DataError,
    Dataset,
    check_feature_count,
    load_dataset,
    split_and_standardize,
    validate_dataset,
)
from deltaprop.settings import DatasetSettings as DatasetConfig

SYNTHETIC = ("moons", "circles", "xor", "spirals", "blobs")


def make_config(**overrides) -> DatasetConfig:
    """A small DatasetConfig; keyword arguments override its fields."""
    return DatasetConfig(**{"n_samples": 200, "noise": 0.1, **overrides})


def make_dataset(x, y, names=None) -> Dataset:
    x = np.asarray(x, dtype=np.float64)
    names = names or tuple(f"f{j}" for j in range(x.shape[1]))
    return Dataset(x=x, y=np.asarray(y, dtype=np.float64).reshape(-1, 1),
                   feature_names=tuple(names), name="toy")


def write_csv(path, text: str):
    path.write_text(text)
    return path


# ---------------------------------------------------------------- loaders


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_shapes_labels_and_determinism(name):
    data = load_dataset(make_config(name=name), seed=3)
    assert data.x.shape == (200, 2) and data.x.dtype == np.float64
    assert data.y.shape == (200, 1) and data.y.dtype == np.float64
    assert set(np.unique(data.y)) == {0.0, 1.0}
    assert data.feature_names == ("x1", "x2")
    again = load_dataset(make_config(name=name), seed=3)
    np.testing.assert_array_equal(again.x, data.x)
    np.testing.assert_array_equal(again.y, data.y)
    other = load_dataset(make_config(name=name), seed=4)
    assert not np.array_equal(other.x, data.x)


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_noise_moves_the_points(name):
    quiet = load_dataset(make_config(name=name, noise=0.0), seed=0)
    noisy = load_dataset(make_config(name=name, noise=0.5), seed=0)
    assert not np.allclose(quiet.x, noisy.x)


def test_xor_labels_follow_quadrants_without_noise():
    data = load_dataset(make_config(name="xor", noise=0.0), seed=0)
    np.testing.assert_array_equal(data.y[:, 0], data.x[:, 0] * data.x[:, 1] > 0)


def test_breast_cancer():
    data = load_dataset(make_config(name="breast_cancer"), seed=0)
    assert data.x.shape == (569, 30) and data.y.shape == (569, 1)
    assert data.feature_names[0] == "mean radius" and len(data.feature_names) == 30
    assert set(np.unique(data.y)) == {0.0, 1.0}


def test_digits_binary_label_is_parity():
    data = load_dataset(make_config(name="digits_binary"), seed=0)
    assert data.x.shape == (1797, 64) and data.y.shape == (1797, 1)
    assert len(data.feature_names) == 64
    np.testing.assert_array_equal(data.y[:, 0], load_digits().target % 2)


def test_digits_are_ten_one_hot_outputs():
    data = load_dataset(make_config(name="digits"), seed=0)
    assert data.x.shape == (1797, 64) and data.y.shape == (1797, 10)
    np.testing.assert_array_equal(data.y.sum(axis=1), 1)
    np.testing.assert_array_equal(data.y.argmax(axis=1), load_digits().target)
    assert data.label_names == tuple(f"digit_{k}" for k in range(10))


def test_digits_train_end_to_end_well_above_chance(make_cfg, tmp_path):
    """Ten sigmoid outputs train; the predicted class (argmax) is right far above chance (0.1).
    `acc` thresholds every output at 0.5, so for one-hot labels all-zero outputs score 0.9 and
    the class accuracy is the honest measure. AUC is per output (val/auc/digit_k) and averaged
    over the ten (val/auc, test/auc)."""
    from deltaprop.io.files import load_params
    from deltaprop.network import predict_proba
    from deltaprop.run.config import read
    from deltaprop.run.setup import prepare_data
    from deltaprop.run.train import train

    cfg = make_cfg("dataset=digits", "model.hidden=[32]", "trainer.epochs=5",
                   "trainer.eval_every=5", run_dir=tmp_path)
    final = train(cfg)
    assert final["test/acc"] > 0.9 and final["test/auc"] > 0.9
    per_digit = [final[f"val/auc/digit_{k}"] for k in range(10)]
    assert final["val/auc"] == pytest.approx(np.mean(per_digit), rel=1e-12)
    params = load_params(tmp_path / "params.safetensors")
    splits = prepare_data(read(cfg))
    predicted = np.asarray(predict_proba(params, splits.x_test)).argmax(axis=1)
    assert np.mean(predicted == splits.y_test.argmax(axis=1)) > 0.8


def test_unknown_name():
    with pytest.raises(ConfigError, match="name='mnist' must be one of moons, circles"):
        make_config(name="mnist")
    with pytest.raises(DataError, match="dataset.name='mnist' is unknown"):
        load_dataset(SimpleNamespace(name="mnist"), seed=0)


# ---------------------------------------------------------------- CSV


def test_csv_round_trip(tmp_path):
    path = write_csv(tmp_path / "d.csv", "a,target,b\n1.5,0,-2\n3,1,4e-1\n\n")
    data = load_dataset(make_config(name="csv", path=str(path), label="target"), seed=0)
    assert data.feature_names == ("a", "b")
    np.testing.assert_array_equal(data.x, [[1.5, -2.0], [3.0, 0.4]])
    np.testing.assert_array_equal(data.y, [[0.0], [1.0]])


def test_csv_file_not_found(tmp_path):
    missing = str(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=re.escape(f"dataset.path='{missing}': file not found")):
        load_dataset(make_config(name="csv", path=missing), seed=0)


def test_csv_missing_label_column_lists_columns(tmp_path):
    path = write_csv(tmp_path / "d.csv", "a,b,c\n1,2,0\n")
    config = make_config(name="csv", path=str(path), label="target")
    with pytest.raises(DataError, match="dataset.label='target' is not a column of .*d.csv; "
                                        "columns are: a, b, c"):
        load_dataset(config, seed=0)


def test_csv_non_numeric_cell_names_column_and_row(tmp_path):
    path = write_csv(tmp_path / "d.csv", "age,label\n30,0\n41,1\nold,0\n")
    with pytest.raises(DataError, match="column 'age' has a non-numeric value 'old' at row 3"):
        load_dataset(make_config(name="csv", path=str(path)), seed=0)


def test_csv_bad_labels_name_the_label_column(tmp_path):
    path = write_csv(tmp_path / "d.csv", "a,target\n1,0\n2,2\n3,1\n")
    config = make_config(name="csv", path=str(path), label="target")
    with pytest.raises(DataError, match="labels must be 0 or 1; found 2 in column 'target'"):
        load_dataset(config, seed=0)


def test_csv_nan_feature_is_reported(tmp_path):
    """NaN and inf were always refused (README: "NaN/inf features (column and count)"); now the
    first row is named too, and labels are counted alike."""
    path = write_csv(tmp_path / "d.csv", "age,label\n7,0\nnan,0\n41,1\ninf,nan\n")
    with pytest.raises(DataError, match=re.escape(
            "features contain non-finite values: column 'age' has 2 NaN/inf values (first at "
            "row 2, line 3); labels must be 0 or 1: column 'label' has 1 NaN/inf values (first "
            f"at row 4, line 5); in {path}")):
        load_dataset(make_config(name="csv", path=str(path)), seed=0)


ROWS = [[1.5, 0, -2.0], [3.0, 1, 0.4], [-0.25, 0, 6e-3], [7.0, 1, 0.5]]


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
@pytest.mark.parametrize("last", [True, False], ids=["ending at the end", "none at the end"])
def test_csv_line_endings_read_alike(tmp_path, ending, last):
    lines = ['a,"target",b', "1.5,0,-2", "3,1,4e-1", "", "-.25,0,6E-3", "7.,1,+.5"]
    path = tmp_path / "d.csv"
    path.write_bytes((ending.join(lines) + (ending if last else "")).encode())
    data = load_dataset(make_config(name="csv", path=str(path), label="target"), seed=0)
    assert data.feature_names == ("a", "b")
    np.testing.assert_array_equal(data.x, [[row[0], row[2]] for row in ROWS])
    np.testing.assert_array_equal(data.y, [[row[1]] for row in ROWS])


def test_csv_row_and_line_numbers_count_cr_only_lines(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"a,label\r1,0\r\r2,1\rold,0\r")
    with pytest.raises(DataError, match=re.escape("column 'a' has a non-numeric value 'old' at "
                                                  "row 3, line 5")):
        load_dataset(make_config(name="csv", path=str(path)), seed=0)


@pytest.mark.parametrize(("cell", "why"), [
    ("1_000", "without '_' between digits"),
    ("\u0663", "not non-ASCII digits"),  # ٣, Arabic-Indic three: float("٣") is 3.0
    ("\uff11", "not non-ASCII digits"),  # １, fullwidth one
    ('"1,000"', "without thousands separators or decimal commas"),
    ('"1,5"', "without thousands separators or decimal commas"),
    ("0x10", "not hexadecimal"),
    ("-0x1p3", "not hexadecimal"),
    ("1.5.2", ""),
    ("1e", ""),
    ("e5", ""),
    ("1 000", ""),
    ("\u00a01", ""),  # a no-break space before the digit: float accepts it
])
def test_csv_cells_that_are_not_plain_ascii_numbers_are_refused(tmp_path, cell, why):
    path = write_csv(tmp_path / "d.csv", f"a,b,label\n1,2,0\n3,{cell},1\n")
    shown = cell.strip('"')
    with pytest.raises(DataError, match=re.escape(
            f"column 'b' has a non-numeric value {shown!r} at row 2, line 3; only plain ASCII "
            f"decimal numbers are read (such as -1.5, 3, 2e-4){', ' + why if why else ''}")):
        load_dataset(make_config(name="csv", path=str(path)), seed=0)


@pytest.mark.parametrize("cell", ["", " ", "\t"])
def test_csv_empty_cells_are_refused_naming_column_and_row(tmp_path, cell):
    path = write_csv(tmp_path / "d.csv", f"a,b,label\n1,2,0\n3,{cell},1\n")
    with pytest.raises(DataError, match=re.escape("column 'b' has an empty cell at row 2, "
                                                  "line 3")):
        load_dataset(make_config(name="csv", path=str(path)), seed=0)


@pytest.mark.parametrize("cell", ["nan", "NaN", "-inf", "Infinity", "+INF", "1e400", "-2e308"])
def test_csv_non_finite_cells_are_refused_naming_column_and_row(tmp_path, cell):
    path = write_csv(tmp_path / "d.csv", f"a,b,label\n1,2,0\n3,{cell},1\n")
    with pytest.raises(DataError, match=re.escape(
            "features contain non-finite values: column 'b' has 1 NaN/inf values (first at "
            "row 2, line 3)")):
        load_dataset(make_config(name="csv", path=str(path)), seed=0)


@pytest.mark.parametrize("cell", ["+3", "-0", "0.", ".5", "2E-4", " 7 ", "\t8", "1e308", "5e-324"])
def test_csv_plain_numbers_are_read_as_float_reads_them(tmp_path, cell):
    path = write_csv(tmp_path / "d.csv", f"a,label\n{cell},0\n")
    from deltaprop.io.data import _read_csv

    assert _read_csv(path, ("label",)).x[0, 0] == float(cell)


def absurd_csv(tmp_path, row: int, value: str = "1e300", n_rows: int = 40):
    """A CSV of n_rows rows, features a (near 1) and b, whose `row`-th row (1-based) holds
    `value` in column a."""
    rng = np.random.default_rng(0)
    lines = ["a,b,label"]
    for index in range(1, n_rows + 1):
        a = value if index == row else f"{1 + 0.1 * rng.normal():.4f}"
        lines.append(f"{a},{rng.normal():.4f},{index % 2}")
    return write_csv(tmp_path / "absurd.csv", "\n".join(lines) + "\n")


def split_of_each_row(n_rows: int) -> dict[str, set[int]]:
    """The data rows (1-based) each split of a 40-row CSV holds (seed 0, default fractions)."""
    rows = np.arange(1.0, n_rows + 1)
    data = Dataset(x=rows[:, None], y=(np.arange(1, n_rows + 1) % 2)[:, None].astype(float),
                   feature_names=("row",), name="rows")
    splits = split_and_standardize(data, 0.15, 0.15, seed=0)
    back = lambda z: set(np.rint(splits.standardizer.std * z[:, 0]
                                 + splits.standardizer.mean).astype(int).tolist())
    return {"train": back(splits.x_train), "val": back(splits.x_val), "test": back(splits.x_test)}


def load_and_split(path):
    return split_and_standardize(load_dataset(make_config(name="csv", path=str(path)), seed=0),
                                 0.15, 0.15, seed=0)


@pytest.mark.parametrize("split", ["val", "test"])
@pytest.mark.parametrize("value", ["1e300", "-3e8", "2e7"])
def test_an_absurd_feature_outside_the_training_split_is_refused(tmp_path, split, value):
    """Today's bug: 1e300 outside the training split trained silently (the training scale stays
    finite). Now it standardizes beyond ±1e6 and is refused naming column and row."""
    row = min(split_of_each_row(40)[split])
    with pytest.raises(DataError) as caught:
        load_and_split(absurd_csv(tmp_path, row, value))
    message = str(caught.value)
    assert "\n" not in message
    assert f"column 'a' at row {row} holds {float(value):.6g}, which standardizes to" in message
    assert "standardized features must be finite and within ±1e+06" in message


def test_an_absurd_feature_in_the_training_split(tmp_path):
    """1e300 overflows the training variance: refused naming the column (as before). A finite
    outlier there becomes the scale itself: every training value stays within √(n_train − 1)
    standard deviations, so the bound never refuses it (it squeezes the other values: look at
    the data)."""
    row = min(split_of_each_row(40)["train"])
    with pytest.raises(DataError, match=r"variance overflows\): 'a' \(\|x\| up to 1e\+300\)"):
        load_and_split(absurd_csv(tmp_path, row, "1e300"))
    splits = load_and_split(absurd_csv(tmp_path, row, "2e7"))
    assert np.abs(splits.x_train).max() <= np.sqrt(len(splits.x_train) - 1)


def test_the_standardized_range_bound_is_inclusive_and_names_the_feature():
    from deltaprop.io.data import STANDARDIZED_LIMIT, Standardizer

    standardizer = Standardizer(mean=np.array([0.0, 10.0]), std=np.array([1.0, 2.0]))
    edge = [[STANDARDIZED_LIMIT, 10.0], [-STANDARDIZED_LIMIT, 10.0 + 2 * STANDARDIZED_LIMIT]]
    np.testing.assert_array_equal(standardizer.transform(edge),
                                  [[1e6, 0.0], [-1e6, 1e6]])
    beyond = [[0.0, 10.0], [0.0, 10.0 + 2.0000002e6]]
    with pytest.raises(DataError, match=re.escape(
            "the data: column 'feature 2' at row 2 holds 2.00001e+06, which standardizes to "
            "1e+06 (training mean 10, std 2)")):
        standardizer.transform(beyond)
    with pytest.raises(DataError, match=r"column 'x' at row 1 holds nan.*\(1 more such cells\)"):
        standardizer.transform([[np.nan, np.inf]], feature_names=("x", "y"))


MULTI_LABEL_CSV = "c,x1,a,x2,b\n1,0.5,0,7,1\n0,1.5,1,8,1\n1,2.5,1,9,0\n"


def test_csv_label_list_gives_one_output_per_column_in_its_order(tmp_path):
    """dataset.label=[c,a,b] as Hydra composes it (a ListConfig): y columns in the list's order,
    not the file's."""
    from conftest import compose_config

    path = write_csv(tmp_path / "d.csv", MULTI_LABEL_CSV)
    cfg = compose_config("dataset=csv", f"dataset.path={path}", "dataset.label=[c,a,b]")
    data = load_dataset(cfg.dataset, seed=0)
    assert data.label_names == ("c", "a", "b") and data.feature_names == ("x1", "x2")
    np.testing.assert_array_equal(data.y, [[1, 0, 1], [0, 1, 1], [1, 1, 0]])
    np.testing.assert_array_equal(data.x, [[0.5, 7], [1.5, 8], [2.5, 9]])
    one = load_dataset(make_config(name="csv", path=str(path), label="b"), seed=0)  # a string
    assert one.y.shape == (3, 1) and one.label_names == ("b",)
    assert one.feature_names == ("c", "x1", "a", "x2")


@pytest.mark.parametrize(("label", "message"), [
    ([], "dataset.label=[] is invalid: name one label column"),
    (None, "dataset.label=None is invalid"),
    (1.5, "dataset.label=1.5 is invalid"),
    (["a", "a"], "dataset.label=[a, a] is invalid: each label column once; repeated: a"),
    (["a", ["b"]], "dataset.label=[a, ['b']] is invalid: ['b'] is not a column name"),
    (["a", " "], "dataset.label=[a,  ] is invalid: ' ' is not a column name"),
    (["a", "zz"], "dataset.label='zz' is not a column of"),
])
def test_a_bad_label_list_is_refused_naming_dataset_label(tmp_path, label, message):
    path = write_csv(tmp_path / "d.csv", MULTI_LABEL_CSV)
    with pytest.raises(DataError, match=re.escape(message)):
        load_dataset(make_config(name="csv", path=str(path), label=label), seed=0)


def test_a_bad_label_in_a_list_names_its_column(tmp_path):
    path = write_csv(tmp_path / "d.csv", "x,a,b\n1,0,1\n2,1,3\n")
    with pytest.raises(DataError, match="labels must be 0 or 1; found 3 in column 'b'"):
        load_dataset(make_config(name="csv", path=str(path), label=["a", "b"]), seed=0)


# ---------------------------------------------------------------- validation


def test_valid_dataset_passes():
    validate_dataset(make_dataset([[0.0, 1.0], [2.0, 3.0]], [0, 1]))


@pytest.mark.parametrize("x", [np.zeros((0, 2)), np.zeros((3, 0))])
def test_empty_dataset(x):
    data = Dataset(x=x, y=np.zeros((x.shape[0], 1)), feature_names=("a", "b")[: x.shape[1]],
                   name="tiny")
    with pytest.raises(DataError, match="dataset 'tiny' is empty"):
        validate_dataset(data)


def test_non_finite_features_name_each_column_and_count():
    x = [[np.nan, 1.0, 0.0], [np.inf, 2.0, -np.inf], [1.0, 3.0, 0.0]]
    data = make_dataset(x, [0, 1, 0], names=("age", "height", "weight"))
    with pytest.raises(DataError) as error:
        validate_dataset(data)
    assert str(error.value) == (
        "features contain non-finite values: column 'age' has 2 NaN/inf values; "
        "column 'weight' has 1 NaN/inf values"
    )


def test_labels_outside_zero_one_are_listed_sorted():
    data = make_dataset(np.ones((4, 1)), [2, 0, 0.5, 1])
    with pytest.raises(DataError, match="labels must be 0 or 1; found 0.5, 2 in column 'label'"):
        validate_dataset(data)


def test_nan_labels_are_rejected():
    data = make_dataset(np.ones((2, 1)), [np.nan, 1])
    with pytest.raises(DataError, match="labels must be 0 or 1; found NaN"):
        validate_dataset(data)


def test_many_bad_labels_are_truncated():
    data = make_dataset(np.ones((20, 1)), np.arange(2, 22))
    with pytest.raises(DataError, match=r"found 2, 3, .*, 11, \.\.\. \(20 distinct values\)"):
        validate_dataset(data)


def test_check_feature_count():
    check_feature_count(np.zeros((5, 3)), 3)
    with pytest.raises(DataError, match=r"data has 4 features, but the model expects 3 inputs "
                                        r"\(sizes\[0\]\)"):
        check_feature_count(np.zeros((5, 4)), 3)


# ---------------------------------------------------------------- splits


def _ids_of(x_split, splits):
    """Recover the integer id stored in feature 0 from standardized rows."""
    raw = x_split * splits.standardizer.std + splits.standardizer.mean
    return np.rint(raw[:, 0]).astype(int)


def _id_dataset(n=100, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.arange(n, dtype=np.float64)
    x = np.column_stack([ids, rng.normal(5.0, 3.0, n), rng.exponential(2.0, n)])
    return make_dataset(x, np.arange(n) % 2)


def test_split_sizes_add_up_and_are_disjoint():
    data = _id_dataset(100)
    splits = split_and_standardize(data, val_fraction=0.15, test_fraction=0.2, seed=0)
    train, val, test = (_ids_of(s, splits) for s in (splits.x_train, splits.x_val, splits.x_test))
    assert (len(train), len(val), len(test)) == (65, 15, 20)
    assert sorted(np.concatenate([train, val, test])) == list(range(100))
    # Labels travel with their rows.
    np.testing.assert_array_equal(splits.y_val[:, 0], val % 2)
    assert all(a.dtype == np.float64 for a in (splits.x_train, splits.y_train, splits.x_test))
    assert splits.feature_names == data.feature_names


def test_standardizer_is_fitted_on_train_only():
    data = _id_dataset(100)
    splits = split_and_standardize(data, val_fraction=0.2, test_fraction=0.2, seed=1)
    np.testing.assert_allclose(splits.x_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(splits.x_train.std(axis=0), 1.0, rtol=1e-12)
    train, val = _ids_of(splits.x_train, splits), _ids_of(splits.x_val, splits)
    train_mean, train_std = data.x[train].mean(axis=0), data.x[train].std(axis=0)
    # The training statistics differ from the full-data ones, so this check can fail.
    assert not np.allclose(train_mean, data.x.mean(axis=0))
    np.testing.assert_allclose(splits.standardizer.mean, train_mean, rtol=1e-12)
    np.testing.assert_allclose(splits.x_val, (data.x[val] - train_mean) / train_std, atol=1e-12)


def test_constant_column_gets_std_one():
    x = np.column_stack([np.full(40, 0.1), np.arange(40.0)])
    splits = split_and_standardize(make_dataset(x, np.arange(40) % 2), 0.25, 0.25, seed=0)
    assert splits.standardizer.std[0] == 1.0
    np.testing.assert_allclose(splits.x_train[:, 0], 0.0, atol=1e-15)
    assert np.isfinite(splits.x_test).all()


def test_split_is_stratified_and_deterministic():
    y = (np.arange(100) < 30).astype(float)  # 30% positives
    data = make_dataset(np.arange(100.0).reshape(-1, 1), y)
    splits = split_and_standardize(data, 0.2, 0.2, seed=5)
    assert (splits.y_train.sum(), splits.y_val.sum(), splits.y_test.sum()) == (18, 6, 6)
    again = split_and_standardize(data, 0.2, 0.2, seed=5)
    np.testing.assert_array_equal(again.x_train, splits.x_train)
    other = split_and_standardize(data, 0.2, 0.2, seed=6)
    assert not np.array_equal(other.x_train, splits.x_train)


@pytest.mark.filterwarnings("ignore:training split has a single class")
def test_split_falls_back_when_a_class_is_too_rare():
    y = np.zeros(20)
    y[0] = 1  # one positive: cannot be stratified
    splits = split_and_standardize(make_dataset(np.arange(20.0).reshape(-1, 1), y), 0.2, 0.2, 0)
    assert len(splits.y_train) + len(splits.y_val) + len(splits.y_test) == 20
    assert splits.y_train.sum() + splits.y_val.sum() + splits.y_test.sum() == 1


def test_empty_validation_split():
    data = make_dataset(np.arange(3.0).reshape(-1, 1), [0, 1, 0])
    with pytest.raises(DataError, match="validation split is empty: 3 samples with "
                                        "val_fraction=0.1"):
        split_and_standardize(data, val_fraction=0.1, test_fraction=0.4, seed=0)


def test_empty_training_split():
    data = make_dataset(np.arange(4.0).reshape(-1, 1), [0, 1, 0, 1])
    with pytest.raises(DataError, match="training split is empty: 4 samples"):
        split_and_standardize(data, val_fraction=0.5, test_fraction=0.5, seed=0)


def test_single_class_training_split_warns():
    data = make_dataset(np.arange(10.0).reshape(-1, 1), np.ones(10))
    with pytest.warns(UserWarning, match=r"training split has a single class \(all 6 labels "
                                         r"in column 'label' are 1\)"):
        split_and_standardize(data, 0.2, 0.2, seed=0)


def test_two_class_training_split_does_not_warn():
    data = make_dataset(np.arange(10.0).reshape(-1, 1), np.arange(10) % 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split_and_standardize(data, 0.2, 0.2, seed=0)


# ---------------------------------------------------------------- encodings, compression, scale

CSV_TEXT = "a,b,label\n" + "".join(f"{i * 0.5},{i % 3},{i % 2}\n" for i in range(40))


@pytest.mark.parametrize("kind", ["plain", "gzip", "bz2", "xz", "utf-8-bom", "utf-16"])
def test_csv_is_read_compressed_or_in_unicode_with_a_byte_order_mark(tmp_path, kind):
    import bz2
    import gzip
    import lzma

    path = tmp_path / "data.csv"
    compressed = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}
    encodings = {"utf-8-bom": "utf-8-sig", "utf-16": "utf-16"}
    if kind in compressed:
        path.write_bytes(compressed[kind](CSV_TEXT.encode()))
    else:
        path.write_text(CSV_TEXT, encoding=encodings.get(kind, "utf-8"))
    data = load_dataset(make_config(name="csv", path=str(path)), 0)
    assert data.feature_names == ("a", "b")  # no BOM left in the first column's name
    np.testing.assert_array_equal(data.x[:, 0], 0.5 * np.arange(40))


@pytest.mark.parametrize(("content", "message"), [
    ("a,b\xe9,label\n1,2,0\n".encode("latin-1"), r"is not UTF-8 text \(byte 0xe9 at position 3\)"),
    (b"\x00\x01binary", "holds NUL bytes: a binary file"),
    (b"\x1f\x8b\x08\x00broken", "cannot be read"),
], ids=["latin-1", "binary", "truncated-gzip"])
def test_unreadable_csv_files_are_named_with_the_problem(tmp_path, content, message):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as caught:
        load_dataset(make_config(name="csv", path=str(path)), 0)
    assert str(path) in str(caught.value)


def test_features_whose_variance_overflows_float64_are_refused():
    x = np.column_stack([np.arange(40) * 1e200, np.arange(40)])
    with pytest.raises(DataError, match=r"too large to standardize .*'f0' \(\|x\| up to \d\.\de\+201\)"):
        split_and_standardize(make_dataset(x, np.arange(40) % 2), 0.15, 0.15, 0)
    huge_but_fine = np.column_stack([np.arange(40) * 1e150, np.arange(40)])
    splits = split_and_standardize(make_dataset(huge_but_fine, np.arange(40) % 2), 0.15, 0.15, 0)
    assert np.isfinite(splits.x_train).all() and abs(splits.x_train[:, 0].std() - 1) < 1e-9
