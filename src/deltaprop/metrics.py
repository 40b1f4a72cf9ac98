"""Host-side metrics of a population: per-member rows, ROC-AUC, and the summary over members.

Every function takes NumPy arrays whose first axis is the member (M = 1 for a single run), so a
single run and a sweep compute their numbers with the same code. Nothing here touches a file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# The member's identity in every final row; the rest are metrics.
IDENTITY = ("member", "seed", "lr", "diverged", "diverged_epoch")


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
    result: dict[str, np.ndarray], y: np.ndarray, prefix: str
) -> dict[str, np.ndarray]:
    """{prefix/loss, prefix/acc[, prefix/auc (one output)]}, each (M,), from diagnostics.evaluate
    run for every member."""
    metrics = {f"{prefix}/loss": result["loss"], f"{prefix}/acc": result["acc"]}
    if y.shape[1] == 1:
        metrics[f"{prefix}/auc"] = batched_roc_auc(y, result["probabilities"])
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


def summarize_by_lr(finals: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Per learning rate: member counts (diverged ones with their epochs), and the mean and std
    over the finite (not diverged) members of each key."""
    rows = []
    for lr in sorted({row["lr"] for row in finals}):
        group = [row for row in finals if row["lr"] == lr]
        finite = [row for row in group if not row["diverged"]]
        summary: dict[str, Any] = {
            "lr": lr,
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


def higher_is_better(key: str) -> bool:
    """Accuracy and AUC are maximized; losses minimized."""
    return key.rsplit("/", 1)[-1] in ("acc", "auc")


def aggregate(finals: Sequence[dict[str, Any]], objective: str) -> dict[str, Any]:
    """The result of a sweep: its best learning rate's mean over finite members of every metric.

    The best learning rate has the best mean `objective` over its finite (not diverged) members
    (lowest loss, highest accuracy or AUC); sweep/best_lr names it (when no lr has a finite mean,
    `objective` is NaN and sweep/best_lr absent). A diverging or merely bad
    learning rate thus never moves the result (or a Hydra sweeper's objective); by-lr tables
    (`summarize_by_lr`) show every one. Also sweep/members and sweep/diverged (counts).
    """
    by_lr = [
        row for row in summarize_by_lr(finals, [objective])
        if math.isfinite(row[f"{objective}/mean"])
    ]
    summary: dict[str, Any] = {}
    if by_lr:
        sign = -1.0 if higher_is_better(objective) else 1.0
        best_lr = min(by_lr, key=lambda row: sign * row[f"{objective}/mean"])["lr"]
        best = [row for row in finals if row["lr"] == best_lr and not row["diverged"]]
        summary = {key: _mean_std([row[key] for row in best if key in row])[0]
                   for key in metric_keys(best)}
        summary["sweep/best_lr"] = best_lr
    else:  # no lr has a finite mean objective: say so with a NaN, never a missing key
        summary[objective] = math.nan
    summary["sweep/members"] = float(len(finals))
    summary["sweep/diverged"] = float(sum(row["diverged"] for row in finals))
    return summary
