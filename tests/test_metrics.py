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
    summarize_by_point,
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


def test_several_outputs_get_metrics_per_output_and_auc_averaged_over_them():
    """Two members, four examples, three outputs: per-output acc and AUC by label name, the
    overall acc their mean, val/auc the mean of the defined AUCs (output "c" has one class)."""
    y = np.array([[0, 1, 0], [1, 0, 0], [1, 1, 0], [0, 0, 0]], np.float64)
    probabilities = np.array([
        [[0.1, 0.9, 0.2], [0.8, 0.3, 0.7], [0.7, 0.6, 0.1], [0.2, 0.4, 0.3]],  # a, b: AUC 1
        [[0.6, 0.2, 0.9], [0.4, 0.7, 0.1], [0.9, 0.6, 0.2], [0.3, 0.1, 0.6]],  # a: ¾, b: ½
    ])
    accuracy = ((probabilities > 0.5) == (y > 0.5)).mean(axis=(1, 2))
    result = {"loss": np.array([0.3, 0.6]), "acc": accuracy, "probabilities": probabilities}
    columns = split_metrics(result, y, "val", ("a", "b", "c"))
    assert list(columns) == ["val/loss", "val/acc", "val/auc", "val/acc/a", "val/acc/b",
                             "val/acc/c", "val/auc/a", "val/auc/b", "val/auc/c"]
    np.testing.assert_allclose(columns["val/acc/a"], [1.0, 0.5])
    np.testing.assert_allclose(columns["val/acc/c"], [0.75, 0.5])
    np.testing.assert_allclose(np.mean([columns[f"val/acc/{k}"] for k in "abc"], axis=0),
                               columns["val/acc"], rtol=1e-15)
    np.testing.assert_allclose(columns["val/auc/a"], [1.0, 0.75])
    np.testing.assert_allclose(columns["val/auc/b"], [1.0, 0.5])
    assert np.isnan(columns["val/auc/c"]).all()  # one class: undefined, and left out of the mean
    np.testing.assert_allclose(columns["val/auc"], [1.0, 0.625])
    averaged_only = split_metrics(result, y, "test")  # no label names: the averages only
    assert list(averaged_only) == ["test/loss", "test/acc", "test/auc"]
    with pytest.raises(ValueError, match="2 label names"):
        split_metrics(result, y, "val", ("a", "b"))
    none_defined = split_metrics(result, np.zeros((4, 3)), "val", ("a", "b", "c"))
    assert np.isnan(none_defined["val/auc"]).all()


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
    rows = summarize_by_point(FINALS, ["val/best_loss"])
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
    assert higher_is_better("val/auc/loss") and higher_is_better("val/acc/a")  # one output's
    assert not higher_is_better("val/best_loss")


def test_grid_points_and_single_axes_are_summarized_and_the_best_point_named():
    rows = [final(m, m % 2, 0.1, loss) | {"weight_decay": wd}
            for m, (wd, loss) in enumerate([(0.0, 0.5), (0.0, 0.3), (0.1, 0.2), (0.1, 0.2)])]
    rows += [final(4, 0, 1.0, 0.9) | {"weight_decay": 0.0}, final(5, 1, 1.0, None, True)
             | {"weight_decay": 0.1}]
    points = summarize_by_point(rows, ["val/best_loss"], ("lr", "weight_decay"))
    assert [(row["lr"], row["weight_decay"], row["members"]) for row in points] == [
        (0.1, 0.0, 2), (0.1, 0.1, 2), (1.0, 0.0, 1), (1.0, 0.1, 1)]
    assert points[0]["val/best_loss/mean"] == pytest.approx(0.4)
    assert points[3]["diverged"] == 1 and math.isnan(points[3]["val/best_loss/mean"])
    by_decay = summarize_by_point(rows, ["val/best_loss"], ("weight_decay",))
    assert [(row["weight_decay"], row["members"], row["finite"]) for row in by_decay] == [
        (0.0, 3, 3), (0.1, 3, 2)]
    summary = aggregate(rows, "val/best_loss", ("lr", "weight_decay"))
    assert (summary["sweep/best_lr"], summary["sweep/best_weight_decay"]) == (0.1, 0.1)
    assert summary["val/best_loss"] == pytest.approx(0.2)
