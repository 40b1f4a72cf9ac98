"""Nielsen's learning slowdown: one sigmoid neuron trained with each cost, by the hand-written pass.

"Neural Networks and Deep Learning", chapter 3, trains a single sigmoid neuron to map x = 1 to
y = 0 by gradient descent (η = 0.15, 300 epochs of the one example), from w = 0.6, b = 0.9
(a = σ(1.5) ≈ 0.82) and from w = b = 2 (a = σ(4) ≈ 0.98), once with the quadratic cost and once
with the cross-entropy. For this neuron z = w x + b, and both costs' gradients are δ times x and 1:

    ∂C/∂w = δ x,   ∂C/∂b = δ,   δ = a − y                (cross-entropy: σ' cancels)
                                δ = (a − y) σ'(z)        (quadratic: σ'(z) = a(1 − a) stays)

From w = b = 2 the output is badly wrong and saturated, σ'(4) ≈ 0.018, so the quadratic cost
barely moves it for the first hundred or so epochs while the cross-entropy takes it down at once.

`neuron_curves` is pure (jax only): one neuron, one cost, every epoch; `slowdown_runs` runs every
start with both costs; `summary_lines` measures the gap; the command
`deltaprop-learning-slowdown` (cli/teaching.py) writes the figure and the JSON to its run directory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from deltaprop.backprop import manual_grad
from deltaprop.losses import loss_fn

log = logging.getLogger(__name__)

COSTS = ("bce", "mse")
COST_NAMES = {"bce": "cross-entropy", "mse": "quadratic"}
FIGURE_NAME = "learning_slowdown.png"
CURVES_NAME = "learning_slowdown.json"


class NeuronRun(NamedTuple):
    """One neuron trained with one cost from one start: arrays of epochs + 1 values, epoch 0 the
    start, epoch e after e gradient steps."""

    loss: str  # "bce" | "mse"
    start: tuple[float, float]  # (w, b) at epoch 0
    cost: np.ndarray  # the cost C at each epoch (bce: cross-entropy; mse: ½(a − y)²)
    output: np.ndarray  # a = σ(w x + b)
    weight: np.ndarray  # w
    bias: np.ndarray  # b


def neuron_curves(weight: float, bias: float, x: float, y: float, learning_rate: float,
                  epochs: int, loss: str) -> dict[str, jax.Array]:
    """Gradient descent on one sigmoid neuron and one example, the gradient by manual_grad.

    Args:
      weight, bias: w and b at epoch 0.
      x, y: the example (Nielsen: 1 → 0).
      learning_rate: η.
      epochs: gradient steps (one per epoch: the one example is the whole training set).
      loss: "bce" or "mse".

    Returns:
      {"cost", "output", "weight", "bias"}: each (epochs + 1,), in float64 where it is enabled.
    """
    dtype = jnp.result_type(float)  # float64 under jax_enable_x64, else float32
    params = [{"W": jnp.full((1, 1), weight, dtype), "b": jnp.full((1,), bias, dtype)}]
    inputs, targets = jnp.full((1, 1), x, dtype), jnp.full((1, 1), y, dtype)

    def measured(params):
        z = params[0]["W"][0, 0] * x + params[0]["b"][0]  # z = w x + b
        return {"cost": loss_fn(params, inputs, targets, loss=loss), "output": jax.nn.sigmoid(z),
                "weight": params[0]["W"][0, 0], "bias": params[0]["b"][0]}

    def epoch(params, _):
        grads = manual_grad(params, inputs, targets, loss=loss)  # ∂C/∂w = δ x, ∂C/∂b = δ
        stepped = jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)  # θ ← θ − η ∂C/∂θ
        return stepped, measured(params)

    last, history = jax.lax.scan(epoch, params, None, length=epochs)
    final = measured(last)
    return {key: jnp.append(history[key], final[key]) for key in history}


def slowdown_runs(starts: Sequence[Sequence[float]], x: float, y: float, learning_rate: float,
                  epochs: int) -> list[NeuronRun]:
    """Both costs from every (w, b) start: for each start, bce then mse."""
    from deltaprop.precision import float64_scope

    runs = []
    with float64_scope():
        for weight, bias in starts:
            for loss in COSTS:
                curves = jax.device_get(neuron_curves(float(weight), float(bias), x, y,
                                                      learning_rate, epochs, loss))
                runs.append(NeuronRun(loss, (float(weight), float(bias)),
                                      *(np.asarray(curves[key], np.float64)
                                        for key in ("cost", "output", "weight", "bias"))))
    return runs


def first_epoch_within(run: NeuronRun, y: float, threshold: float) -> int | None:
    """The first epoch at which |a − y| < threshold; None if the run never gets there."""
    within = np.flatnonzero(np.abs(run.output - y) < threshold)
    return int(within[0]) if within.size else None


def run_label(run: NeuronRun) -> str:
    weight, bias = run.start
    return f"{COST_NAMES[run.loss]} ({run.loss}), w = {weight:g}, b = {bias:g}"


def summary_lines(runs: Sequence[NeuronRun], y: float, threshold: float,
                  report_epoch: int) -> list[str]:
    """Per run: its output at epoch 0 and at `report_epoch`, its final output, and the first epoch
    its output is within `threshold` of y."""
    lines = []
    for run in runs:
        epoch = first_epoch_within(run, y, threshold)
        reached = (f"first |a - y| < {threshold:g} at epoch {epoch}" if epoch is not None
                   else f"|a - y| >= {threshold:g} for all {len(run.output) - 1} epochs")
        lines.append(f"{run_label(run):<38} a: {run.output[0]:.3f} at epoch 0, "
                     f"{run.output[report_epoch]:.3f} after {report_epoch}, "
                     f"{run.output[-1]:.3f} after {len(run.output) - 1}; {reached}")
    return lines


def curves_json(runs: Sequence[NeuronRun], settings: dict[str, Any], y: float, threshold: float,
                report_epoch: int) -> dict[str, Any]:
    """What learning_slowdown.json holds: the settings and, per run, its curves and measures."""
    return settings | {"runs": [{
        "loss": run.loss, "w0": run.start[0], "b0": run.start[1],
        f"output_after_{report_epoch}": float(run.output[report_epoch]),
        "first_epoch_within_threshold": first_epoch_within(run, y, threshold),
        "cost": run.cost.tolist(), "output": run.output.tolist(),
        "w": run.weight.tolist(), "b": run.bias.tolist(),
    } for run in runs]}
