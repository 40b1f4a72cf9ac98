"""Datasets for binary classifiers: load, validate, split and standardize.

Every loader returns a `Dataset` with features `x: (N, n_features)` and labels `y: (N, n_outputs)`,
both float64, labels 0/1. Nothing here downloads: the data are synthetic (deterministic given the
seed), bundled with scikit-learn, or read from a local CSV file.

Bad data raise `DataError` before training starts, with a one-line message that names the column,
the values or the shapes at fault.

A CSV is read faithfully or refused: LF, CRLF and CR-only line endings read alike; a cell holds a
plain ASCII decimal number (`-1.5`, `3`, `2e-4`, `.5`; spaces around it allowed) and nothing else:
empty cells, `1_000`, `1,000`, non-ASCII digits (`٣`), `0x10` are refused naming column and row,
and `nan`, `inf` (or a number that overflows float64, `1e400`) are refused as NaN/inf values,
counted per column with the first row. After standardizing with the training split's mean and
std, every feature of every split must be finite and within ±STANDARDIZED_LIMIT (1e6) standard
deviations: a cell beyond that (a typo, a unit error: 1e300 among values near 1) would swamp
every other feature, and is refused naming column and row wherever it lands.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import lzma
import math
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deltaprop.errors import InputError

# Distinct bad label values listed in an error message before it says "...".
_MAX_VALUES_SHOWN = 10
# |(x − mean) / std| beyond this, a million training standard deviations, is refused: no real
# feature lies there (the training split's own values lie within √(n_train − 1)); a typo or a
# unit error does, and would saturate every unit it feeds.
STANDARDIZED_LIMIT = 1e6
# A plain ASCII decimal number: sign, digits with an optional point, optional exponent.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)


class DataError(InputError):
    """Bad data, found before training starts; the message names column/values/shapes."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features and 0/1 labels of one dataset.

    Attributes:
        x: (N, n_features) float64 features.
        y: (N, n_outputs) float64 labels, each 0 or 1; (N, 0) for data without labels
            (`load_prediction_data` of a CSV that lacks the label column).
        feature_names: n_features column names.
        name: the dataset's name, used in error messages.
        label_names: n_outputs label column names, used in error messages.
    """

    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    name: str
    label_names: tuple[str, ...] = ("label",)


@dataclass(frozen=True, eq=False)
class Standardizer:
    """Per-feature affine map `(x - mean) / std`, fitted on the training split.

    Attributes:
        mean: (n_features,) training mean.
        std: (n_features,) training standard deviation; 1 for constant columns.
    """

    mean: np.ndarray
    std: np.ndarray

    def transform(self, x: np.ndarray, feature_names: Sequence[str] = (),
                  name: str = "the data") -> np.ndarray:
        """Standardize features, refusing any value that does not stay finite and within
        ±STANDARDIZED_LIMIT.

        Args:
            x: (N, n_features) features; row n of the messages is x[n − 1].
            feature_names: n_features column names for the messages (else "feature j").
            name: what x is, for the messages.

        Returns:
            (N, n_features) float64 `(x - mean) / std`.

        Raises:
            DataError: x of the wrong shape, or a standardized value out of range, naming the
                column, the row and the value.
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise DataError(
                f"cannot standardize x of shape {x.shape}: "
                f"expected (N, {self.mean.shape[0]})"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            z = (x - self.mean) / self.std
        _refuse_extreme(x, z, self, feature_names, name)
        return z


def _refuse_extreme(x: np.ndarray, z: np.ndarray, standardizer: Standardizer,
                    feature_names: Sequence[str], name: str) -> None:
    """DataError naming the first cell (by row) whose standardized value is not finite or
    beyond ±STANDARDIZED_LIMIT."""
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(z) <= STANDARDIZED_LIMIT)  # NaN compares False: bad too
    if not bad.any():
        return
    row, column = (int(index) for index in np.argwhere(bad)[0])
    label = feature_names[column] if column < len(feature_names) else f"feature {column + 1}"
    others = int(bad.sum()) - 1
    raise DataError(
        f"{name}: column {label!r} at row {row + 1} holds {x[row, column]:.6g}, which "
        f"standardizes to {z[row, column]:.3g} (training mean "
        f"{standardizer.mean[column]:.6g}, std {standardizer.std[column]:.3g}); standardized "
        f"features must be finite and within ±{STANDARDIZED_LIMIT:g}: fix the cell or rescale "
        "the column" + (f" ({others} more such cells)" if others else "")
    )


@dataclass(frozen=True, eq=False)
class Splits:
    """Train/validation/test splits, standardized with the training statistics.

    Attributes:
        x_train, x_val, x_test: (n_split, n_features) float64 standardized features.
        y_train, y_val, y_test: (n_split, n_outputs) float64 0/1 labels.
        standardizer: the map fitted on the raw training features.
        feature_names: n_features column names.
        label_names: n_outputs label column names.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    standardizer: Standardizer
    feature_names: tuple[str, ...]
    label_names: tuple[str, ...] = ("label",)


# ---------------------------------------------------------------- synthetic 2-D datasets

_XY_NAMES = ("x1", "x2")


def _as_labels(labels: np.ndarray) -> np.ndarray:
    """(N,) 0/1 labels of any dtype -> (N, 1) float64."""
    return np.asarray(labels, dtype=np.float64).reshape(-1, 1)


def _moons(n_samples: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets as sklearn_datasets

    return sklearn_datasets.make_moons(n_samples=n_samples, noise=noise, random_state=seed)


def _circles(n_samples: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets as sklearn_datasets

    return sklearn_datasets.make_circles(
        n_samples=n_samples, noise=noise, factor=0.5, random_state=seed
    )


def _xor(n_samples: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    clean = rng.uniform(-1.0, 1.0, size=(n_samples, 2))
    # The label comes from the clean point (quadrants 1 and 3); the noise then blurs the border.
    labels = clean[:, 0] * clean[:, 1] > 0
    return clean + noise * rng.normal(size=clean.shape), labels


def _spirals(n_samples: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n_samples) % 2
    # 1.5 turns, starting half a turn out so the two arms do not meet at the origin;
    # radius = angle / π, so neighbouring arms of opposite classes lie 1 apart.
    angle = rng.uniform(0.5 * np.pi, 3.5 * np.pi, size=n_samples)
    radius = angle / np.pi
    # Class 1 is class 0 rotated by half a turn.
    phase = np.pi * labels
    points = np.stack(
        [radius * np.cos(angle + phase), radius * np.sin(angle + phase)], axis=1
    )
    return points + noise * rng.normal(size=points.shape), labels


def _blobs(n_samples: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets as sklearn_datasets

    # Fixed centres so that `noise` (the cluster std) alone sets how much the classes overlap.
    return sklearn_datasets.make_blobs(
        n_samples=n_samples,
        n_features=2,
        centers=[[-1.0, -1.0], [1.0, 1.0]],
        cluster_std=noise,
        random_state=seed,
    )


_SYNTHETIC: dict[str, Callable[[int, float, int], tuple[np.ndarray, np.ndarray]]] = {
    "moons": _moons,
    "circles": _circles,
    "xor": _xor,
    "spirals": _spirals,
    "blobs": _blobs,
}


def _xor_table() -> Dataset:
    """The Boolean XOR truth table, as a textbook writes it: (0,0)→0, (0,1)→1, (1,0)→1, (1,1)→0."""
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    return Dataset(x=x, y=_as_labels(x[:, 0] != x[:, 1]), feature_names=_XY_NAMES,
                   name="xor_table")


# ---------------------------------------------------------------- datasets bundled with sklearn


def _breast_cancer() -> Dataset:
    from sklearn import datasets as sklearn_datasets

    bunch = sklearn_datasets.load_breast_cancer()  # ships with scikit-learn: no download
    return Dataset(
        x=np.asarray(bunch.data, dtype=np.float64),
        y=_as_labels(bunch.target),  # 1 = benign, 0 = malignant
        feature_names=tuple(str(name) for name in bunch.feature_names),
        name="breast_cancer",
    )


def _digits_binary() -> Dataset:
    from sklearn import datasets as sklearn_datasets

    bunch = sklearn_datasets.load_digits()  # ships with scikit-learn: no download
    return Dataset(
        x=np.asarray(bunch.data, dtype=np.float64),
        y=_as_labels(bunch.target % 2),  # 1 = odd digit
        feature_names=tuple(str(name) for name in bunch.feature_names),
        name="digits_binary",
        label_names=("odd",),
    )


def _digits() -> Dataset:
    """The 8×8 digits as ten one-vs-rest outputs, as Nielsen's MNIST network: y[n, k] = 1 when
    image n shows digit k (one-hot rows, y: (1797, 10))."""
    from sklearn import datasets as sklearn_datasets

    bunch = sklearn_datasets.load_digits()  # ships with scikit-learn: no download
    return Dataset(
        x=np.asarray(bunch.data, dtype=np.float64),
        y=np.eye(10, dtype=np.float64)[bunch.target],
        feature_names=tuple(str(name) for name in bunch.feature_names),
        name="digits",
        label_names=tuple(f"digit_{k}" for k in range(10)),
    )


# ---------------------------------------------------------------- CSV files


# The first bytes of the compressed files read transparently, and the module that opens each.
_COMPRESSION = ((b"\x1f\x8b", gzip), (b"BZh", bz2), (b"\xfd7zXZ\x00", lzma))
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))


def _open_text(path: Path):
    """The file as text: gzip, bz2 or xz compressed or not (by its first bytes), UTF-8 or
    UTF-16 with a byte-order mark; DataError naming the file and the problem otherwise."""
    with open(path, "rb") as raw:
        head = raw.read(6)
    opener = next((module.open for magic, module in _COMPRESSION if head.startswith(magic)), open)
    encoding = "utf-8"
    try:
        with opener(path, "rb") as binary:
            start = binary.read(4)
        encoding = next((name for bom, name in _BOMS if start.startswith(bom)), "utf-8")
        with opener(path, "rt", encoding=encoding, newline="") as text:
            content = text.read()
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path} is not {encoding.upper()} text (byte {error.object[error.start]:#04x} at "
            f"position {error.start}); save it as UTF-8 CSV"
        ) from None
    except (OSError, EOFError, lzma.LZMAError) as error:
        raise DataError(f"{path} cannot be read: {error}") from None
    if "\x00" in content:
        raise DataError(f"{path} holds NUL bytes: a binary file, not a CSV text file")
    return io.StringIO(content, newline="")  # LF, CRLF and CR-only lines alike


def _numeric_rows(reader, header: list[str], path: Any) -> tuple[list[list[float]], dict]:
    """Every non-empty row after the header as floats, and {column: ["row r, line l", ...]} of
    its NaN/inf cells; DataError naming the row and column of a cell that is not a plain ASCII
    decimal number."""
    rows = []
    non_finite: dict[str, list[str]] = {}
    try:
        for row_number, cells in enumerate((cells for cells in reader if cells), start=1):
            if len(cells) != len(header):
                raise DataError(
                    f"{path}: row {row_number} (line {reader.line_num}) has {len(cells)} cells, "
                    f"but the header has {len(header)} columns"
                )
            where = f"row {row_number}, line {reader.line_num}"
            values = [_cell_value(cell, column, where, path)
                      for column, cell in zip(header, cells)]
            for column, value in zip(header, values):
                if not math.isfinite(value):
                    non_finite.setdefault(column, []).append(where)
            rows.append(values)
    except csv.Error as error:
        raise DataError(f"{path}: not a readable CSV file at line {reader.line_num}: {error}") \
            from None
    return rows, non_finite


def _refuse_non_finite(non_finite: dict[str, list[str]], labels: Sequence[str], path: Any):
    """DataError counting the NaN/inf cells of each column, with the first one's row: the
    features' as validate_dataset words them, then the labels'."""
    def counted(columns):
        return "; ".join(f"column {column!r} has {len(non_finite[column])} NaN/inf values "
                         f"(first at {non_finite[column][0]})" for column in columns)

    features = [column for column in non_finite if column not in labels]
    label_columns = [column for column in non_finite if column in labels]
    parts = ([f"features contain non-finite values: {counted(features)}"] if features else [])
    parts += [f"labels must be 0 or 1: {counted(label_columns)}"] if label_columns else []
    if parts:
        raise DataError(f"{'; '.join(parts)}; in {path}")


def _cell_value(cell: str, column: str, where: str, path: Any) -> float:
    """A plain ASCII decimal number as a float (NaN/inf tokens, and numbers that overflow
    float64, as NaN/inf: counted by the caller); DataError naming column and row otherwise."""
    text = cell.strip(" \t")
    if _PLAIN_NUMBER.fullmatch(text) or _NON_FINITE.fullmatch(text):
        return float(text)
    what = "an empty cell" if not text else f"a non-numeric value {cell!r}"
    raise DataError(
        f"{path}: column {column!r} has {what} at {where}; only plain ASCII decimal numbers "
        f"are read (such as -1.5, 3, 2e-4){_why_not_a_number(text)}"
    )


def _why_not_a_number(text: str) -> str:
    """What about `text` (which Python's float may well accept) a plain number lacks."""
    if any(unicodedata.category(char) == "Nd" and not char.isascii() for char in text):
        return ", not non-ASCII digits"
    if "_" in text:
        return ", without '_' between digits"
    if "," in text:
        return ", without thousands separators or decimal commas (',')"
    if text[:2].lower() in ("0x", "0b", "0o") or text[1:3].lower() in ("0x", "0b", "0o"):
        return ", not hexadecimal, binary or octal"
    return ""


def _read_csv(path: Any, labels: tuple[str, ...], labels_optional: bool = False) -> Dataset:
    """Read a CSV with a header row; columns `labels` are y, every other column a feature.

    With `labels_optional`, a file with none of the label columns gives y: (N, 0) and no
    label names (data to predict on); one with some but not all of them is still an error."""
    if not path or not Path(path).is_file():
        raise DataError(f"dataset.path={path!r}: file not found")
    with _open_text(Path(path)) as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if not header:
            raise DataError(f"{path}: the file is empty; a header row is required")
        repeated = sorted(name for name, count in Counter(header).items() if count > 1)
        if repeated:
            raise DataError(f"{path}: column names must be unique; repeated: {', '.join(repeated)}")
        missing = [label for label in labels if label not in header]
        if missing and not (labels_optional and len(missing) == len(labels)):
            raise DataError(
                f"dataset.label={missing[0]!r} is not a column of {path}; "
                f"columns are: {', '.join(header)}"
            )
        rows, non_finite = _numeric_rows(reader, header, path)
    _refuse_non_finite(non_finite, () if missing else labels, path)
    table = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(header))
    label_indices = [] if missing else [header.index(label) for label in labels]
    feature_indices = [i for i in range(len(header)) if i not in label_indices]
    return Dataset(
        x=table[:, feature_indices],
        y=table[:, label_indices],
        feature_names=tuple(header[i] for i in feature_indices),
        name=str(path),
        label_names=() if missing else tuple(labels),
    )


def label_columns(label: Any) -> tuple[str, ...]:
    """dataset.label as the CSV's label columns: one name (`dataset.label=target`) or a
    non-empty list of distinct names (`dataset.label=[a,b,c]`, one sigmoid output each).

    A whole number counts as the column of that name (`dataset.label=2024`: Hydra reads it as
    an int). DataError naming dataset.label for anything else."""
    if isinstance(label, str) or (isinstance(label, int) and not isinstance(label, bool)):
        names = [label]
    elif isinstance(label, Sequence) and label:  # a list, or OmegaConf's ListConfig
        names = list(label)
    else:
        raise DataError(
            f"dataset.label={label!r} is invalid: name one label column (dataset.label=target) "
            "or a non-empty list of them (dataset.label=[a,b,c])"
        )
    bad = [name for name in names
           if not (isinstance(name, str) and name.strip()) and not
           (isinstance(name, int) and not isinstance(name, bool))]
    if bad:
        raise DataError(f"dataset.label={_shown_label(label)} is invalid: {bad[0]!r} is not a "
                        "column name (quote a name that YAML reads as another type)")
    names = [str(name).strip() for name in names]
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise DataError(f"dataset.label={_shown_label(label)} is invalid: each label column "
                        f"once; repeated: {', '.join(repeated)}")
    return tuple(names)


def _shown_label(label: Any) -> str:
    """dataset.label as the user wrote it: a list as [a, b], not OmegaConf's repr."""
    if isinstance(label, Sequence) and not isinstance(label, str):
        return "[" + ", ".join(str(name) for name in label) + "]"
    return repr(label)


# ---------------------------------------------------------------- public API


def load_dataset(cfg: Any, seed: int) -> Dataset:
    """Load the dataset named by `cfg.name` and validate it.

    Args:
        cfg: a `DatasetConfig` (or a DictConfig with the same attributes).
        seed: seeds the synthetic datasets; the same seed gives the same data.

    Returns:
        A validated `Dataset` with x: (N, n_features), y: (N, n_outputs) (1; 10 for digits;
        one per label column of a CSV).

    Raises:
        DataError: unknown name, unreadable CSV, or data that fail `validate_dataset`.
    """
    name = str(cfg.name)
    if name in _SYNTHETIC:
        points, labels = _SYNTHETIC[name](int(cfg.n_samples), float(cfg.noise), seed)
        data = Dataset(
            x=np.asarray(points, dtype=np.float64),
            y=_as_labels(labels),
            feature_names=_XY_NAMES,
            name=name,
        )
    elif name == "xor_table":
        data = _xor_table()
    elif name == "breast_cancer":
        data = _breast_cancer()
    elif name == "digits_binary":
        data = _digits_binary()
    elif name == "digits":
        data = _digits()
    elif name == "csv":
        data = _read_csv(cfg.path, label_columns(cfg.label))
    else:
        known = (*_SYNTHETIC, "xor_table", "breast_cancer", "digits_binary", "digits", "csv")
        raise DataError(f"dataset.name={name!r} is unknown; choose one of: {', '.join(known)}")
    validate_dataset(data)
    return data


def load_prediction_data(cfg: Any, seed: int, label_names: tuple[str, ...]) -> Dataset:
    """`load_dataset` for data to predict on: a CSV's label columns are `label_names` (those the
    model was trained with, whatever `cfg.label` says) and may be absent, giving y: (N, 0).

    Raises:
        DataError: as `load_dataset`; also a CSV with some but not all of `label_names`.
    """
    if str(cfg.name) != "csv":
        return load_dataset(cfg, seed)
    data = _read_csv(cfg.path, tuple(label_names), labels_optional=True)
    validate_dataset(data)
    return data


def preprocessing_metadata(splits: Splits) -> dict[str, Any]:
    """What applying a model trained on `splits` to new data takes, for its parameter file:
    {"feature_names": [...], "label_names": [...], "standardizer": {"mean": [...], "std": [...]}}
    (JSON-ready: lists of str and of float64 values, which JSON round-trips exactly)."""
    return {
        "feature_names": list(splits.feature_names),
        "label_names": list(splits.label_names),
        "standardizer": {
            "mean": np.asarray(splits.standardizer.mean, np.float64).tolist(),
            "std": np.asarray(splits.standardizer.std, np.float64).tolist(),
        },
    }


def _format_value(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{value:g}"


def _label_name(data: Dataset, column: int) -> str:
    return data.label_names[column] if column < len(data.label_names) else f"y[:, {column}]"


def validate_dataset(data: Dataset) -> None:
    """Check shapes, finite features and 0/1 labels.

    Args:
        data: x: (N, n_features), y: (N, n_outputs).

    Raises:
        DataError: naming the dataset, the offending columns, counts or values.
    """
    x, y = np.asarray(data.x), np.asarray(data.y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise DataError(
            f"dataset {data.name!r}: x must be (N, n_features) and y (N, n_outputs); "
            f"got x {x.shape} and y {y.shape}"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(
            f"dataset {data.name!r} is empty: {x.shape[0]} rows, {x.shape[1]} feature columns"
        )
    if len(data.feature_names) != x.shape[1]:
        raise DataError(
            f"dataset {data.name!r}: {len(data.feature_names)} feature names "
            f"for {x.shape[1]} feature columns"
        )

    non_finite_counts = np.count_nonzero(~np.isfinite(x), axis=0)
    bad_columns = [
        f"column {data.feature_names[j]!r} has {count} NaN/inf values"
        for j, count in enumerate(non_finite_counts)
        if count
    ]
    if bad_columns:
        raise DataError(f"features contain non-finite values: {'; '.join(bad_columns)}")

    for j in range(y.shape[1]):
        column = y[:, j]
        # NaN != 0 and NaN != 1, so NaN labels land here too.
        bad_values = np.unique(column[(column != 0) & (column != 1)])
        if bad_values.size:
            shown = ", ".join(_format_value(v) for v in bad_values[:_MAX_VALUES_SHOWN])
            if bad_values.size > _MAX_VALUES_SHOWN:
                shown += f", ... ({bad_values.size} distinct values)"
            raise DataError(
                f"labels must be 0 or 1; found {shown} in column {_label_name(data, j)!r}"
            )


def check_feature_count(x: np.ndarray, n_inputs: int) -> None:
    """Raise DataError unless x: (N, n_inputs) matches the model's first layer."""
    n_features = np.shape(x)[1]
    if n_features != n_inputs:
        raise DataError(
            f"data has {n_features} features, but the model expects {n_inputs} inputs (sizes[0])"
        )


def _fit_standardizer(x_train: np.ndarray, feature_names: tuple[str, ...]) -> Standardizer:
    """Per-column mean and std in float64; DataError for a column whose scale overflows it."""
    with np.errstate(over="ignore", invalid="ignore"):
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
    overflowing = [name for name, m, d in zip(feature_names, mean, std)
                   if not (np.isfinite(m) and np.isfinite(d))]
    if overflowing:
        largest = np.max(np.abs(x_train), axis=0)
        shown = ", ".join(f"{name!r} (|x| up to {largest[feature_names.index(name)]:.3g})"
                          for name in overflowing)
        raise DataError(
            f"features too large to standardize in float64 (their variance overflows): {shown}; "
            "rescale these columns"
        )
    # A constant column's std is 0 (or rounding error away from it): divide by 1 instead.
    constant = std <= 1e-12 * np.maximum(1.0, np.abs(mean))
    return Standardizer(mean=mean, std=np.where(constant, 1.0, std))


def _stratify_by(classes: np.ndarray, n_held_out: int, n_kept: int) -> np.ndarray | None:
    """`classes` when a stratified split is possible (as sklearn requires), else None."""
    counts = np.unique(classes, return_counts=True)[1]
    if counts.min() >= 2 and min(n_held_out, n_kept) >= counts.size:
        return classes
    return None


def split_and_standardize(
    data: Dataset, val_fraction: float, test_fraction: float, seed: int
) -> Splits:
    """Shuffle, split into train/validation/test and standardize with train statistics.

    Splits are stratified by label row when every class can be (each class >= 2 samples and each
    split at least as large as the number of classes), and unstratified otherwise.

    Args:
        data: x: (N, n_features), y: (N, n_outputs).
        val_fraction: share of N for validation, rounded to the nearest sample.
        test_fraction: share of N for test, rounded to the nearest sample.
        seed: seeds the shuffle; the same seed gives the same splits.

    Returns:
        `Splits` with float64 arrays; x_* standardized by `Splits.standardizer`.

    Raises:
        DataError: when any split would be empty, or a standardized feature of any split is not
            finite or beyond ±STANDARDIZED_LIMIT (naming the column and the data's row).

    Warns:
        UserWarning: when a label column has a single class in the training split.
    """
    x = np.asarray(data.x, dtype=np.float64)
    y = np.asarray(data.y, dtype=np.float64)
    train, val, test = _split_rows(y, _split_sizes(x.shape[0], val_fraction, test_fraction), seed)
    _warn_if_single_class(data, y[train])

    standardizer = _fit_standardizer(x[train], tuple(data.feature_names))
    z = standardizer.transform(x, data.feature_names, f"dataset {data.name!r}")  # every split
    return Splits(
        x_train=z[train],
        y_train=y[train],
        x_val=z[val],
        y_val=y[val],
        x_test=z[test],
        y_test=y[test],
        standardizer=standardizer,
        feature_names=tuple(data.feature_names),
        label_names=tuple(data.label_names),
    )


def _split_rows(y: np.ndarray, sizes: tuple[int, ...], seed: int) -> tuple[np.ndarray, ...]:
    """(train, val, test) row indices of the data, of `sizes` (n_train, n_val, n_test), each
    stratified by label row where it can be. Rows, not copies of x: every row is standardized
    and checked in the data's own order, its messages naming the data's rows."""
    from sklearn.model_selection import train_test_split  # imported here: it takes a second

    n_train, n_val, n_test = sizes
    # One class id per distinct label row, so multi-output labels stratify too.
    classes = np.unique(y, axis=0, return_inverse=True)[1].reshape(-1)
    rng = np.random.default_rng(seed)
    test_seed, val_seed = (int(s) for s in rng.integers(2**31 - 1, size=2))
    rest, test = train_test_split(np.arange(y.shape[0]), test_size=n_test, random_state=test_seed,
                                  stratify=_stratify_by(classes, n_test, n_val + n_train))
    train, val = train_test_split(rest, test_size=n_val, random_state=val_seed,
                                  stratify=_stratify_by(classes[rest], n_val, n_train))
    return train, val, test


def _split_sizes(n_samples: int, val_fraction: float, test_fraction: float) -> tuple[int, ...]:
    """(n_train, n_val, n_test), each share rounded to the nearest sample; DataError if one is 0."""
    n_test = math.floor(n_samples * test_fraction + 0.5)
    n_val = math.floor(n_samples * val_fraction + 0.5)
    n_train = n_samples - n_val - n_test
    if n_val < 1:
        raise DataError(
            f"validation split is empty: {n_samples} samples with val_fraction={val_fraction}"
        )
    if n_test < 1:
        raise DataError(
            f"test split is empty: {n_samples} samples with test_fraction={test_fraction}"
        )
    if n_train < 1:
        raise DataError(
            f"training split is empty: {n_samples} samples with val_fraction={val_fraction} "
            f"and test_fraction={test_fraction}"
        )
    return n_train, n_val, n_test


def _warn_if_single_class(data: Dataset, y_train: np.ndarray) -> None:
    for j in range(y_train.shape[1]):
        present = np.unique(y_train[:, j])
        if present.size < 2:
            warnings.warn(
                f"training split has a single class (all {len(y_train)} labels in column "
                f"{_label_name(data, j)!r} are {_format_value(present[0])}); "
                "the model cannot learn to separate classes",
                UserWarning,
                stacklevel=3,
            )
