"""Evaluation metrics and the per-layer view of vanishing gradients.

For each layer l = 2..L, from one hand-written backward pass over a batch:
    ‖δ_l‖         how much error signal reaches layer l (σ' ≤ 1/4 shrinks it going back);
                  δ_l = ∂L/∂z_l of the mean loss (backprop.py), not the textbook's
                  per-example δ^l, which is N·n_L times larger
    ‖∂L/∂W_l‖     the size of the weight update the layer receives (Frobenius: it grows with
                  the matrix, so a 64×30 W_2 shows a larger norm than a 30×30 W_3 at equal entries)
    rms ∂L/∂W_l   ‖∂L/∂W_l‖ / sqrt(n_{l−1}·n_l): the typical update of one weight, comparable
                  across layers of different sizes
    ‖∂L/∂b_l‖     = ‖Σ_batch δ_l‖, Nielsen's "speed of learning" of layer l
    saturated_l   fraction of units with φ'(z_l) < 1e-3 (hidden layers only; sigmoid:
                  φ'(z_l) = a_l(1 − a_l); relu: the dead units, φ' = 0)

`model` (model.Model) carries the run's cost and hidden φ (None: BCE and sigmoid): the reported
loss is the trained one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from deltaprop.backprop import backprop_trace
from deltaprop.model import Model, parts_of
from deltaprop.network import Params

SATURATION_THRESHOLD = 1e-3


def evaluate(
    params: Params, x: jax.Array, y: jax.Array, model: Model | None = None
) -> dict[str, jax.Array]:
    """Loss (the model's cost; None: BCE), accuracy (threshold 0.5 on every output) and the
    probabilities. Jit-compatible."""
    trace = backprop_trace(params, x, y, **parts_of(model))
    probabilities = trace.activations[-1]
    accuracy = jnp.mean((probabilities > 0.5) == (y > 0.5))
    return {"loss": trace.loss, "acc": accuracy, "probabilities": probabilities}


def layer_statistics(
    params: Params, x: jax.Array, y: jax.Array, model: Model | None = None
) -> dict[str, jax.Array]:
    """Per-layer ‖δ_l‖, ‖∂L/∂W_l‖, its root mean square per entry, ‖∂L/∂b_l‖ and saturation,
    keyed `layer_{l}/...`. Jit-compatible.

    δ_l here is ∂L/∂z_l of the batch-mean loss (backprop.py), so its norm does not grow with N;
    the textbook's per-example δ^l is N·n_L times it, example by example.
    """
    parts = parts_of(model)
    trace = backprop_trace(params, x, y, **parts)
    stats = {}
    n_layers = len(params)
    for index in range(n_layers):
        name = f"layer_{index + 2}"
        stats[f"{name}/delta_norm"] = jnp.linalg.norm(trace.deltas[index])
        grad_W = trace.grads[index]["W"]  # (n_{l−1}, n_l)
        stats[f"{name}/grad_W_norm"] = jnp.linalg.norm(grad_W)
        # rms = ‖∂L/∂W_l‖_F / sqrt(n_{l−1}·n_l): per entry, so layers of any size compare
        stats[f"{name}/grad_W_rms"] = stats[f"{name}/grad_W_norm"] / jnp.sqrt(grad_W.size)
        stats[f"{name}/grad_b_norm"] = jnp.linalg.norm(trace.grads[index]["b"])
        if index < n_layers - 1:  # hidden layers: φ'(z_l), sigmoid: a_l(1 − a_l)
            derivative = parts["activation"].derivative(
                trace.pre_activations[index], trace.activations[index + 1])
            stats[f"{name}/saturated"] = jnp.mean(derivative < SATURATION_THRESHOLD)
    return stats


def progress_metrics(
    params: Params, arrays: dict[str, jax.Array], model: Model | None = None
) -> dict[str, dict[str, jax.Array]]:
    """Everything logged at an evaluation, as one program: `evaluate` on the train, validation
    and test splits (arrays x_train, y_train, x_val, ...) and the per-layer statistics on the
    training split. Jit-compatible."""
    results = {
        split: evaluate(params, arrays[f"x_{split}"], arrays[f"y_{split}"], model)
        for split in ("train", "val", "test")
    }
    results["statistics"] = layer_statistics(params, arrays["x_train"], arrays["y_train"], model)
    return results
