"""Score a trained run on its own data: `evaluate_from_config(cfg)`, the body of deltaprop-eval
(lightning-hydra-template's eval.py).

    deltaprop-eval run=outputs/train/default/<time>                 # its test split
    deltaprop-eval run=<sweep dir>/members/member_3 split=val       # one member, validation
    deltaprop-eval run=<run dir> csv=labelled.csv                   # a CSV with its columns

The run's saved config (<run>/.hydra/config.yaml; a sweep member's: the sweep's) rebuilds its
data exactly as training split and standardized it; the standardizer must equal the one saved
with the parameters, else the data changed since training and the scores would not be the
run's (refused, one line). The split is scored as training scored it: `test/loss`, `test/acc`,
`test/auc` equal the run's own final test metrics. Written to <run>/eval/<split> (or `out`):
metrics.json and predictions.csv; a W&B run with job_type=eval joins the training run's group.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from deltaprop.io.console import console_output
from deltaprop.io.data import load_prediction_data
from deltaprop.io.files import ensure_writable_directory
from deltaprop.io.tracking import make_logger, resolve_mode
from deltaprop.run.config import read
from deltaprop.run.predict import (
    PredictError,
    check_features,
    find_params,
    load_model,
    saved_settings,
    score,
)
from deltaprop.run.setup import prepare_data
from deltaprop.run.tracker import run_group
from deltaprop.settings import DatasetSettings, EvalSettings, plain

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


def evaluate_from_config(cfg: DictConfig) -> dict[str, float]:
    """Score the run `run` on its `split` (or on `csv`); the metrics, e.g. {"test/acc": ...}.

    Raises:
      InputError (PredictError, DataError, ConfigError, UnsafeFileError): before any work.
    """
    with console_output():
        return _evaluate(read(cfg, EvalSettings))


def _evaluate(settings: EvalSettings) -> dict[str, float]:
    if settings.split not in SPLITS:
        raise PredictError(f"split={settings.split!r} must be one of {', '.join(SPLITS)}")
    params_path = find_params(settings.run)
    run_dir = params_path.parent
    model = load_model(params_path, settings.allow_diverged)
    trained = saved_settings(run_dir)
    if settings.csv:
        name = Path(settings.csv).stem
        csv = DatasetSettings(name="csv", path=settings.csv, label=list(model.labels))
        data = load_prediction_data(csv, trained.data_seed, model.labels)
        check_features(data, model.features, params_path)
        x = model.standardizer.transform(data.x, data.feature_names, f"csv={settings.csv!r}")
        y = data.y if data.y.shape[1] else None
    else:
        name = settings.split
        splits = prepare_data(trained)
        _check_same_standardizer(splits.standardizer, model.standardizer, run_dir)
        x, y = getattr(splits, f"x_{name}"), getattr(splits, f"y_{name}")
    out = Path(settings.out) if settings.out else run_dir / "eval" / name
    ensure_writable_directory(out)  # OutputError: a file in the way, read-only, full
    metrics = score(model, x, y, out, name)
    _log_to_wandb(settings, run_dir, name, metrics)
    return metrics


def _check_same_standardizer(rebuilt, saved, run_dir: Path) -> None:
    if not (np.array_equal(rebuilt.mean, saved.mean) and np.array_equal(rebuilt.std, saved.std)):
        raise PredictError(
            f"the data rebuilt from {run_dir}'s saved config are not the data it trained on "
            "(its training split's mean and std differ from those saved with its parameters: "
            "has the CSV changed?); score them as new data with csv=... or deltaprop-predict")


def _log_to_wandb(settings: EvalSettings, run_dir: Path, name: str, metrics) -> None:
    """One W&B run, job_type=eval, in the training run's group (its folder)."""
    if settings.logger.backend == "none" or not metrics:
        return
    sweep = run_dir.parent.name == "members"
    group = run_group(run_dir.parent.parent if sweep else run_dir)
    logger = make_logger(resolve_mode(settings.logger), plain(settings), run_dir,
                         name=settings.logger.name or f"eval-{name}-{run_dir.name}",
                         group=group, job_type="eval")
    logger.summarize(metrics)
    logger.finish(0)
