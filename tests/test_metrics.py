"""Tests for deltaprop.metrics: per-member rows, ROC-AUC, and the summary over members."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from deltaprop.metrics import (
    aggregate,
    batched_roc_auc,
    higher_is_better,
    member_rows,
    metric_keys,
    roc_auc,
    split_metrics,
    summarize_by_lr,
)


def test_batched_roc_auc_equals_sklearn_with_ties_and_is_nan_for_one_class():
    rng = np.random.default_rng(0)
    y = (rng.random(50) < 0.4).astype(np.float64)[:, None]
    probabilities = np.round(rng.random((4, 50, 1)), 1)  # many ties
    expected = [roc_auc_score(y[:, 0], p[:, 0]) for p in probabilities]
    np.testing.assert_allclose(batched_roc_auc(y, probabilities), expected, rtol=1e-12)
    assert roc_auc(y, probabilities[2]) == pytest.approx(expected[2], rel=1e-12)
    assert np.isnan(batched_roc_auc(np.zeros((50, 1)), probabilities)).all()


@pytest.mark.parametrize("label", [0.0, 1.0])
def test_roc_auc_is_nan_for_a_single_class(label):
    assert math.isnan(roc_auc(np.full((10, 1), label), np.linspace(0, 1, 10)[:, None]))


def test_split_metrics_and_rows_per_member():
    result = {"loss": np.array([0.5, 0.25]), "acc": np.array([0.5, 1.0]),
              "probabilities": np.array([[[0.2], [0.8]], [[0.9], [0.1]]])}
    y = np.array([[0.0], [1.0]])
    columns = split_metrics(result, y, "val")
    assert list(columns) == ["val/loss", "val/acc", "val/auc"]
    np.testing.assert_array_equal(columns["val/auc"], [1.0, 0.0])
    rows = member_rows(columns, {"epoch": 3})
    assert rows == [{"epoch": 3, "val/loss": 0.5, "val/acc": 0.5, "val/auc": 1.0},
                    {"epoch": 3, "val/loss": 0.25, "val/acc": 1.0, "val/auc": 0.0}]
    two_outputs = split_metrics(result | {"probabilities": np.zeros((2, 2, 2))},
                                np.zeros((2, 2)), "val")
    assert "val/auc" not in two_outputs  # AUC of one output only


def final(member, seed, lr, loss, diverged=False, **metrics):
    row = {"member": member, "seed": seed, "lr": lr, "diverged": diverged,
           "diverged_epoch": 3 if diverged else None}
    return row if diverged else row | {"val/best_loss": loss, "val/acc": 1 - loss, **metrics}


FINALS = [
    final(0, 0, 0.1, 0.4), final(1, 1, 0.1, 0.6),
    final(2, 0, 1.0, 0.2), final(3, 1, 1.0, 0.3),
    final(4, 0, 1e38, None, diverged=True), final(5, 1, 1e38, None, diverged=True),
]


def test_by_lr_means_are_over_finite_members_and_count_the_diverged():
    rows = summarize_by_lr(FINALS, ["val/best_loss"])
    assert [row["lr"] for row in rows] == [0.1, 1.0, 1e38]
    assert rows[0]["val/best_loss/mean"] == pytest.approx(0.5)
    assert rows[0]["val/best_loss/std"] == pytest.approx(0.1)
    assert (rows[0]["members"], rows[0]["finite"], rows[0]["diverged"]) == (2, 2, 0)
    assert (rows[2]["finite"], rows[2]["diverged"], rows[2]["diverged_epochs"]) == (0, 2, [3, 3])
    assert math.isnan(rows[2]["val/best_loss/mean"])


def test_the_sweep_result_is_the_best_lr_over_its_finite_members():
    summary = aggregate(FINALS, "val/best_loss")
    assert summary["sweep/best_lr"] == 1.0
    assert summary["val/best_loss"] == pytest.approx(0.25)  # lowest loss
    assert summary["val/acc"] == pytest.approx(0.75)  # the same lr's members
    assert (summary["sweep/members"], summary["sweep/diverged"]) == (6, 2)
    by_accuracy = aggregate(FINALS, "val/acc")  # highest accuracy
    assert by_accuracy["sweep/best_lr"] == 1.0 and by_accuracy["val/acc"] == pytest.approx(0.75)
    # lr 0.1 has the higher loss but also the higher accuracy: each objective picks its own
    overconfident = [final(0, 0, 0.1, 0.9) | {"val/acc": 0.95}, final(1, 0, 1.0, 0.1)]
    assert aggregate(overconfident, "val/acc")["sweep/best_lr"] == 0.1
    assert aggregate(overconfident, "val/best_loss")["sweep/best_lr"] == 1.0


def test_metric_keys_and_directions():
    assert metric_keys(FINALS) == ["val/best_loss", "val/acc"]
    assert higher_is_better("test/acc") and higher_is_better("val/auc")
    assert not higher_is_better("val/best_loss")
