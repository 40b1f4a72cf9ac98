"""Host-side metrics of a population: per-member rows, ROC-AUC, and the summary over members.

Every function takes NumPy arrays whose first axis is the member (M = 1 for a single run), so a
single run and a sweep compute their numbers with the same code. Nothing here touches a file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from deltaprop.population import AXES  # a member's hyperparameters: a grid point is one of each

# The member's identity in every final row; the rest are metrics.
IDENTITY = ("member", "seed", *AXES, "diverged", "diverged_epoch")


def roc_auc(y: np.ndarray, probabilities: np.ndarray) -> float:
    """ROC-AUC of one output; NaN when y holds a single class (AUC is undefined)."""
    return float(batched_roc_auc(y, np.asarray(probabilities)[None])[0])


def batched_roc_auc(y: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """ROC-AUC of every member from the rank-sum (Mann–Whitney) statistic; ties count ½.

    Equals sklearn's roc_auc_score member by member.

    Args:
      y: (N,) or (N, 1) labels in {0, 1}.
      probabilities: (M, N) or (M, N, 1).

    Returns:
      (M,) AUCs; NaN when y holds a single class.
    """
    from scipy.stats import rankdata

    positive = np.asarray(y).reshape(-1) > 0.5
    scores = np.asarray(probabilities, np.float64).reshape(len(probabilities), -1)
    n_positive, n_negative = int(positive.sum()), int((~positive).sum())
    if n_positive == 0 or n_negative == 0:
        return np.full(len(scores), np.nan)
    ranks = rankdata(scores, axis=1)  # average ranks for ties
    # U = Σ ranks of the positives − n₊(n₊+1)/2;  AUC = U / (n₊ n₋)
    u_statistic = ranks[:, positive].sum(axis=1) - n_positive * (n_positive + 1) / 2
    return u_statistic / (n_positive * n_negative)


def split_metrics(
    result: dict[str, np.ndarray], y: np.ndarray, prefix: str,
    label_names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """{prefix/loss, prefix/acc, prefix/auc}, each (M,), from diagnostics.evaluate run for every
    member; with several outputs and their `label_names`, also prefix/acc/<name> and
    prefix/auc/<name> per output.

    loss and acc are over all N·n_L elements (acc is then the mean of the per-output
    accuracies); with several outputs prefix/auc is the mean of the per-output AUCs that are
    defined (an output whose labels hold one class in this split has none; NaN if none has).

    Args:
      result: "loss", "acc" (M,) and "probabilities" (M, N, n_L).
      y: (N, n_L) labels in {0, 1}.
      label_names: n_L names (the CSV's label columns); None: the averaged metrics only.
    """
    metrics = {f"{prefix}/loss": result["loss"], f"{prefix}/acc": result["acc"]}
    n_outputs = y.shape[1]
    if n_outputs == 1:
        metrics[f"{prefix}/auc"] = batched_roc_auc(y, result["probabilities"])
        return metrics
    probabilities = np.asarray(result["probabilities"])
    aucs = np.stack([batched_roc_auc(y[:, j], probabilities[..., j]) for j in range(n_outputs)],
                    axis=1)  # (M, n_L)
    defined = np.isfinite(aucs)
    with np.errstate(invalid="ignore"):  # 0/0 = NaN: no output with a defined AUC
        metrics[f"{prefix}/auc"] = np.where(defined, aucs, 0).sum(1) / defined.sum(1)
    if label_names is None:
        return metrics
    if len(label_names) != n_outputs:
        raise ValueError(f"{len(label_names)} label names {list(label_names)} for {n_outputs} "
                         "outputs")
    # The rule of diagnostics.evaluate's accuracy, one output at a time: (M, N, n_L) -> (M, n_L).
    accuracies = ((probabilities > 0.5) == (np.asarray(y) > 0.5)).mean(axis=1)
    for j, name in enumerate(label_names):
        metrics[f"{prefix}/acc/{name}"] = accuracies[:, j]
    for j, name in enumerate(label_names):
        metrics[f"{prefix}/auc/{name}"] = aucs[:, j]
    return metrics


def member_rows(columns: dict[str, np.ndarray], extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-member dicts of floats from columns of (M,) arrays."""
    n_members = len(next(iter(columns.values())))
    return [
        {**extra, **{key: float(values[m]) for key, values in columns.items()}}
        for m in range(n_members)
    ]


def metric_keys(finals: Sequence[dict[str, Any]]) -> list[str]:
    """The metric keys of the final rows, in order of first appearance."""
    keys: dict[str, None] = {}
    for row in finals:
        keys |= dict.fromkeys(key for key in row if key not in IDENTITY)
    return list(keys)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    array = np.asarray(values, np.float64)
    return float(array.mean()), float(array.std())


def summarize_by_point(
    finals: Sequence[dict[str, Any]], keys: Sequence[str], axes: Sequence[str] = ("lr",)
) -> list[dict[str, Any]]:
    """Per value of `axes` (a grid point, or one axis's values with the others pooled): member
    counts (diverged ones with their epochs), and the mean and std over the finite (not
    diverged) members of each key."""
    rows = []
    point_of = lambda row: tuple(row[axis] for axis in axes)
    for point in sorted({point_of(row) for row in finals}, key=_sortable):
        group = [row for row in finals if point_of(row) == point]
        finite = [row for row in group if not row["diverged"]]
        summary: dict[str, Any] = {
            **dict(zip(axes, point)),
            "members": len(group),
            "finite": len(finite),
            "diverged": len(group) - len(finite),
            "diverged_epochs": [row["diverged_epoch"] for row in group if row["diverged"]],
        }
        for key in keys:
            summary[f"{key}/mean"], summary[f"{key}/std"] = _mean_std(
                [row[key] for row in finite if key in row]
            )
        rows.append(summary)
    return rows


def _sortable(point: tuple) -> tuple:
    return tuple(-math.inf if value is None else value for value in point)


def higher_is_better(key: str) -> bool:
    """Accuracy and AUC are maximized (also one output's: val/acc/<label>); losses minimized."""
    parts = key.split("/")
    return (parts[1] if len(parts) > 1 else parts[0]) in ("acc", "auc")


def aggregate(
    finals: Sequence[dict[str, Any]], objective: str, axes: Sequence[str] = ("lr",)
) -> dict[str, Any]:
    """The result of a sweep: its best grid point's mean over finite members of every metric.

    A grid point is one value of each swept axis (`axes`: lr, and the other swept ones). The
    best has the best mean `objective` over its finite (not diverged) members (lowest loss,
    highest accuracy or AUC); sweep/best_<axis> names it (when no point has a finite mean,
    `objective` is NaN and sweep/best_* absent). A diverging or merely bad point thus never
    moves the result (or a Hydra sweeper's objective); the tables of `summarize_by_point` show
    every one. Also sweep/members and sweep/diverged (counts).
    """
    by_point = [
        row for row in summarize_by_point(finals, [objective], axes)
        if math.isfinite(row[f"{objective}/mean"])
    ]
    summary: dict[str, Any] = {}
    if by_point:
        sign = -1.0 if higher_is_better(objective) else 1.0
        best_point = min(by_point, key=lambda row: sign * row[f"{objective}/mean"])
        best = [row for row in finals if not row["diverged"]
                and all(row[axis] == best_point[axis] for axis in axes)]
        summary = {key: _mean_std([row[key] for row in best if key in row])[0]
                   for key in metric_keys(best)}
        summary |= {f"sweep/best_{axis}": best_point[axis] for axis in axes}
    else:  # no point has a finite mean objective: say so with a NaN, never a missing key
        summary[objective] = math.nan
    summary["sweep/members"] = float(len(finals))
    summary["sweep/diverged"] = float(sum(row["diverged"] for row in finals))
    return summary
