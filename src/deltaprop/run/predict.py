"""Apply a finished training run's model to new data: `predict_from_config(cfg)`.

    deltaprop-predict run=outputs/train/default/<time> dataset=csv dataset.path=new.csv
    deltaprop-predict run=<sweep dir>/members/member_3 dataset=csv dataset.path=new.csv
    deltaprop-predict run=outputs/train/default/<time> dataset=moons dataset.n_samples=500
    deltaprop-predict run=outputs/train/default/<time>       # the run's own dataset, whole

`run` is a training run's directory: a single run's, or one member's of a sweep (a sweep's own
directory holds no parameters of its own; `members/member_<i>` has each member's). Its
params.safetensors carries, beside the weights, the feature names and the standardizer
(the training split's mean and std) that training saved; new features go through that same
`(x − mean) / std` before the forward pass a_L = σ(z_L). A member that diverged is refused
unless allow_diverged=true.

The data: `dataset=csv` reads the file's header; it must hold the run's feature columns, in the
run's order, and may hold its label column(s) (the run's own: `dataset.label` is not consulted).
A synthetic or bundled dataset (`dataset=moons`, ...) is generated as in training from its
`dataset.*` keys and the data seed (`seed`, else the run's), and predicted whole: every
example, not only a test split (deltaprop-eval, run/evaluate.py, scores a run's test split).
Without `dataset=`, the run's own dataset settings (from its saved config).

Written to this invocation's directory (`run_dir`, else Hydra's output directory):
    predictions.csv   one row per example, in the data's order: probability_<label> (σ(z_L)) and
                      predicted_<label> (1 when the probability is > 0.5, as accuracy counts it)
                      for every output column
    metrics.json      only when the data have the labels: predict/loss, predict/acc and
                      predict/auc, computed as training computes test/loss, test/acc, ...; with
                      several outputs (dataset.label=[a,b,c]) also predict/acc/<label> and
                      predict/auc/<label> per output, predict/auc their mean

Bad input (no run, no parameters, parameters from before the standardizer was saved, features
whose names, count or values do not fit) raises an InputError before anything is computed or
written.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

from deltaprop.choices import ActivationName, LossName
from deltaprop.diagnostics import evaluate
from deltaprop.errors import InputError
from deltaprop.io.console import console_output
from deltaprop.io.data import Dataset, Standardizer, load_prediction_data
from deltaprop.io.files import (
    ensure_writable_directory,
    load_params_and_metadata,
    write_csv,
    write_json,
)
from deltaprop.metrics import split_metrics
from deltaprop.model import Model
from deltaprop.network import Params, layer_sizes, predict_proba
from deltaprop.precision import float64_scope
from deltaprop.run.config import read, read_saved_config
from deltaprop.run.setup import resolve_run_dir
from deltaprop.settings import PredictSettings, TrainSettings

log = logging.getLogger(__name__)

PARAMS_NAME = "params.safetensors"
PREDICTIONS_NAME = "predictions.csv"
METRICS_NAME = "metrics.json"
METRICS_PREFIX = "predict"
THRESHOLD = 0.5  # predicted label 1 when σ(z_L) > 0.5: the rule training's accuracy uses
_NAMES_SHOWN = 8  # feature names listed in a message before it says "..."


class PredictError(InputError):
    """A run that cannot be applied, or data it cannot be applied to; the message names the
    key, the path, the columns or the shapes at fault."""


def predict_from_config(cfg: DictConfig) -> dict[str, float]:
    """Apply the model of the run `cfg.run` to the data `cfg.dataset`; write predictions.csv
    (and metrics.json when the data have labels) to the run directory of this invocation.

    Returns:
      {"predict/loss", "predict/acc", "predict/auc"[, "predict/acc/<label>", ...]} when the data
      have the label column(s), else {}.

    Raises:
      InputError (PredictError, DataError, ConfigError, UnsafeFileError): before any work.
    """
    with console_output():  # called from a script or notebook: its lines on stdout
        return _predict(cfg)


def _predict(cfg: DictConfig) -> dict[str, float]:
    settings = read(cfg, PredictSettings)
    params_path = find_params(settings.run)
    model = load_model(params_path, settings.allow_diverged)
    dataset, seed = settings.dataset, settings.seed
    if dataset is None or seed is None:  # the run's own
        trained = saved_settings(params_path.parent)
        if dataset is None:
            log.info("no dataset=...: predicting every example of the run's own dataset=%s "
                     "(training rows included; deltaprop-eval scores its test split)",
                     trained.dataset.name)
        dataset = dataset or trained.dataset
        seed = trained.data_seed if seed is None else seed
    data = load_prediction_data(dataset, seed, model.labels)
    check_features(data, model.features, params_path)
    # (N, n_features): the training split's (x − mean) / std
    x = model.standardizer.transform(data.x, data.feature_names, f"dataset {data.name!r}")
    out_dir = resolve_run_dir(settings)
    ensure_writable_directory(out_dir)  # OutputError: a file in the way, read-only, full
    metrics = score(model, x, data.y if data.y.shape[1] else None, out_dir, METRICS_PREFIX)
    log.info("predicted %d examples of %s with %s", len(x), data.name, params_path)
    if not metrics:
        log.info("no metrics: the data have no label column %s",
                 ", ".join(map(repr, model.labels)))
    return metrics


def score(model: LoadedModel, x: np.ndarray, y: np.ndarray | None, out_dir: Path,
          prefix: str) -> dict[str, float]:
    """Apply the model to standardized x; write predictions.csv (and metrics.json when there
    are labels y) into out_dir; the metrics, keyed `<prefix>/loss`, ...."""
    probabilities, metrics = _apply(model.params, x, y, model.labels, model.model, prefix)
    labels = model.labels
    columns = [f"probability_{name}" for name in labels] + [f"predicted_{name}" for name in labels]
    predicted = (probabilities > THRESHOLD).astype(int)
    rows = [dict(zip(columns, [*p, *label])) for p, label in
            zip(probabilities.tolist(), predicted.tolist())]
    log.info("predictions: %s", write_csv(out_dir / PREDICTIONS_NAME, rows, columns).resolve())
    if metrics:
        metrics_path = write_json(out_dir / METRICS_NAME, metrics)
        width = max(len(key) for key in metrics)
        for key, value in metrics.items():
            log.info("  %-*s  %s", width, key, f"{value:.4f}" if math.isfinite(value) else "nan")
        log.info("metrics: %s", metrics_path.resolve())
    return metrics


def saved_settings(run_dir: Path) -> TrainSettings:
    """The training settings a run was started with: its .hydra/config.yaml (a sweep member's:
    the sweep's, two folders up), read as the training config (keys other commands' configs
    once held are left out).

    Raises:
      PredictError: no saved config.
    """
    for folder in (run_dir, run_dir.parent.parent):
        path = folder / ".hydra" / "config.yaml"
        if path.is_file():
            return read_saved_config(path)
    raise PredictError(f"{run_dir} has no .hydra/config.yaml (nor has its sweep): the run's "
                       "data cannot be rebuilt; name them (dataset=..., seed=...)")


def find_params(run: Any) -> Path:
    """The parameter file of the run directory `run`; PredictError naming what is wrong.

    A sweep's directory holds members/member_<i>/params.safetensors and none of its own: the
    error names the member directories to choose from."""
    if not run:
        raise PredictError(
            f"run={run!r}: name the training run to apply, run=<run dir> "
            "(one member of a sweep: run=<sweep dir>/members/member_<i>)"
        )
    run_dir = Path(str(run))
    if not run_dir.is_dir():
        what = "is a file, not a run directory" if run_dir.exists() else "no such directory"
        raise PredictError(f"run={str(run)!r}: {what}")
    params_path = run_dir / PARAMS_NAME
    if params_path.is_file():
        return params_path
    members = sorted((path for path in (run_dir / "members").glob("member_*")
                      if (path / PARAMS_NAME).is_file()),
                     key=lambda path: (len(path.name), path.name))
    if members:
        raise PredictError(
            f"run={str(run)!r} is a sweep: it has no {PARAMS_NAME} of its own; choose one "
            f"member, run={run_dir / 'members' / 'member_<i>'} (members: "
            f"{members[0].name}..{members[-1].name})"
        )
    raise PredictError(
        f"run={str(run)!r} has no {PARAMS_NAME}: not a finished training run's directory"
    )


@dataclass(frozen=True)
class LoadedModel:
    """A training run's parameter file: the parameters and what applying them takes."""

    params: Params
    standardizer: Standardizer
    features: tuple[str, ...]
    labels: tuple[str, ...]
    model: Model


def load_model(params_path: Path, allow_diverged: bool = False) -> LoadedModel:
    """The model of a training run's parameter file (files from before costs and activations:
    bce, sigmoid). A sweep member that diverged is refused unless `allow_diverged`: its
    parameters are the finite ones it was frozen at, not a trained model.

    Raises:
      PredictError: a file without the standardizer (from before deltaprop saved it), or one
        whose metadata disagree with the weights.
      UnsafeFileError: not a safetensors parameter file.
    """
    params, metadata = load_params_and_metadata(params_path)
    if "feature_names" not in metadata or "standardizer" not in metadata:
        raise PredictError(
            f"{params_path} has no feature names and standardizer in its metadata: it was "
            "trained before deltaprop saved its standardizer; retrain the run to predict with it"
        )
    features = metadata["feature_names"]
    labels = metadata.get("label_names", ["label"])
    standardizer = metadata["standardizer"]
    try:
        mean = np.asarray(standardizer["mean"], np.float64)
        std = np.asarray(standardizer["std"], np.float64)
    except (KeyError, TypeError, ValueError):
        mean = std = np.zeros((0,))
    sizes = layer_sizes(params)
    consistent = (
        isinstance(features, list) and all(isinstance(name, str) for name in features)
        and isinstance(labels, list) and all(isinstance(name, str) for name in labels)
        and mean.shape == std.shape == (len(features),) == (sizes[0],)
        and len(labels) == sizes[-1]
        and np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)
    )
    if not consistent:
        raise PredictError(
            f"{params_path}: its metadata do not fit its weights (sizes {list(sizes)}): "
            f"feature_names {_shown(features)}, label_names {_shown(labels)}, standardizer "
            f"mean {mean.shape} and std {std.shape} (must be ({sizes[0]},), finite, std > 0)"
        )
    loss, activation = metadata.get("loss", "bce"), metadata.get("activation", "sigmoid")
    if loss not in LossName.values() or activation not in ActivationName.values():
        raise PredictError(f"{params_path}: unknown cost or activation in its metadata: "
                           f"loss={loss!r}, activation={activation!r}")
    if metadata.get("diverged") and not allow_diverged:
        raise PredictError(f"{params_path} is a sweep member that diverged (frozen at its last "
                           "finite state); apply it anyway with allow_diverged=true")
    model = Model.named(sizes, loss, activation)
    return LoadedModel(params, Standardizer(mean=mean, std=std), tuple(features), tuple(labels),
                       model)


def check_features(data: Dataset, features: tuple[str, ...], params_path: Path) -> None:
    """Raise PredictError unless `data` has the run's feature columns, by name and in order."""
    names = tuple(data.feature_names)
    if names == features:
        return
    trained = f"the run {params_path.parent} was trained on {len(features)} features"
    if len(names) != len(features):
        detail = f"x has shape {data.x.shape}, the model takes (N, {len(features)})"
    elif set(names) == set(features):
        detail = "the same columns in another order"
    else:
        missing = [name for name in features if name not in names]
        unexpected = [name for name in names if name not in features]
        detail = f"missing {_shown(missing)}, unexpected {_shown(unexpected)}"
    raise PredictError(
        f"dataset {data.name!r} has features {_shown(list(names))} but {trained} "
        f"{_shown(list(features))}: {detail}"
    )


def _shown(names: Any) -> str:
    if not isinstance(names, list) or len(names) <= _NAMES_SHOWN:
        return repr(names)
    return repr(names[:_NAMES_SHOWN])[:-1] + f", ... ({len(names)} in all)]"


def _apply(params: Params, x: np.ndarray, y: np.ndarray | None, labels: tuple[str, ...],
           model: Model, prefix: str = METRICS_PREFIX):
    """(probabilities (N, n_L) float64, metrics) of the model on standardized x, in the dtype of
    its parameters; metrics {} without labels (several outputs: also per output, by `labels`)."""
    dtype = params[0]["W"].dtype
    scope = float64_scope() if dtype == np.float64 else contextlib.nullcontext()
    with scope:
        device_params = jax.tree.map(jnp.asarray, params)
        inputs = jnp.asarray(x, dtype)
        probabilities = np.asarray(
            jax.jit(partial(predict_proba, activation=model.activation))(device_params, inputs),
            np.float64)
        if y is None:
            return probabilities, {}
        metrics_of = jax.jit(partial(evaluate, model=model))
        result = jax.device_get(metrics_of(device_params, inputs, jnp.asarray(y, dtype)))
    # split_metrics takes a population (member axis first): this model is a population of one.
    columns = split_metrics({key: np.asarray(value)[None] for key, value in result.items()}, y,
                            prefix, labels)
    return probabilities, {key: float(value[0]) for key, value in columns.items()}
