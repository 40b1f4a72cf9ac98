"""The data of a run: deltaprop.io.data's generators or the learner's CSV, split and standardized.

Synthetic sets are drawn by `deltaprop.io.data.load_dataset` (same names, same seeds as
`deltaprop-train dataset=...`); a CSV goes through the same reader and checks, from a temporary
file that is removed at once. `split_and_standardize` splits 60% train / 20% validation /
20% test (the test split is held out: the page shows train and validation), standardized with
the training statistics. The decision boundary is drawn over the first two standardized
features, on a GRID × GRID grid; any further features are held at 0, their training mean.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from deltaprop.io.data import DataError, Dataset, load_dataset, split_and_standardize
from deltaprop.playground.settings import MAX_CSV_FEATURES, MAX_CSV_ROWS, Settings, SettingsError

VAL_FRACTION, TEST_FRACTION = 0.2, 0.2
GRID = 40  # the boundary's grid: GRID × GRID points
MARGIN = 0.25  # the grid reaches this far beyond the data, in standardized units


@dataclass(frozen=True, eq=False)
class Problem:
    """Standardized splits, the boundary's grid and what the page says about the data."""

    x_train: np.ndarray  # (N_train, n_features) float64
    y_train: np.ndarray  # (N_train, 1) in {0, 1}
    x_val: np.ndarray  # (N_val, n_features)
    y_val: np.ndarray  # (N_val, 1)
    feature_names: tuple[str, ...]
    extent: tuple[float, float, float, float]  # x1 from, x1 to, x2 from, x2 to
    grid: np.ndarray  # (GRID·GRID, n_features): row r, column c at index r·GRID + c
    notes: tuple[str, ...]  # warnings of the loader, the features held at 0

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]


def _csv_dataset(settings: Settings, seed: int) -> Dataset:
    """The CSV text through deltaprop.io.data's reader (it reads files: a temporary one)."""
    handle, path = tempfile.mkstemp(prefix="deltaprop-playground-", suffix=".csv")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(settings.csv)
        config = SimpleNamespace(name="csv", path=path, label=settings.csv_label)
        try:
            data = load_dataset(config, seed)
        except DataError as error:  # name the upload, not the temporary file
            message = str(error).replace(path, "the CSV file").replace("dataset.label", "csv_label")
            field = "csv_label" if "csv_label" in message else "csv"
            raise SettingsError(field, message) from None
    finally:
        os.unlink(path)
    rows, features = data.x.shape
    if features < 2 or features > MAX_CSV_FEATURES:
        raise SettingsError("csv", f"the CSV file has {features} feature column(s); the "
                            f"playground draws two and takes 2 to {MAX_CSV_FEATURES}")
    if rows > MAX_CSV_ROWS:
        raise SettingsError("csv", f"the CSV file has {rows} rows; at most {MAX_CSV_ROWS}")
    return data


def _grid(x: np.ndarray) -> tuple[tuple[float, float, float, float], np.ndarray]:
    """A GRID × GRID grid over the first two features (the rest at 0), rows from the top."""
    low, high = x[:, :2].min(axis=0) - MARGIN, x[:, :2].max(axis=0) + MARGIN
    first = np.linspace(low[0], high[0], GRID)
    second = np.linspace(high[1], low[1], GRID)  # the first row is the top of the picture
    points = np.zeros((GRID * GRID, x.shape[1]))
    points[:, 0] = np.tile(first, GRID)
    points[:, 1] = np.repeat(second, GRID)
    return (float(low[0]), float(high[0]), float(low[1]), float(high[1])), points


def load_problem(settings: Settings) -> Problem:
    """The splits of the settings' data; SettingsError naming the field for data it cannot use."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if settings.dataset == "csv":
            data = _csv_dataset(settings, settings.seed)
        else:
            config = SimpleNamespace(name=settings.dataset, n_samples=settings.n_samples,
                                     noise=settings.noise)
            data = load_dataset(config, settings.seed)
        try:
            splits = split_and_standardize(data, VAL_FRACTION, TEST_FRACTION, settings.seed)
        except DataError as error:
            raise SettingsError(settings.dataset == "csv" and "csv" or "n_samples",
                                str(error)) from None
    n_train = splits.x_train.shape[0]
    if settings.batch_size > n_train:
        raise SettingsError("batch_size", f"batch_size={settings.batch_size} is larger than the "
                            f"training split ({n_train} examples)")
    notes = [str(warning.message) for warning in caught]
    if splits.x_train.shape[1] > 2:
        notes.append(f"the boundary is a slice through {splits.feature_names[0]!r} and "
                     f"{splits.feature_names[1]!r}, the other features held at their mean")
    extent, grid = _grid(np.concatenate([splits.x_train, splits.x_val]))
    return Problem(splits.x_train, splits.y_train, splits.x_val, splits.y_val,
                   tuple(splits.feature_names), extent, grid, tuple(notes))
