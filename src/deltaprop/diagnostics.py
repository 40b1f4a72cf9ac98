"""Evaluation metrics and the per-layer view of vanishing gradients.

For each layer l = 2..L, from one hand-written backward pass over a batch:
    ‖δ_l‖         how much error signal reaches layer l (σ' ≤ 1/4 shrinks it going back);
                  δ_l = ∂L/∂z_l of the mean loss (backprop.py), not the textbook's
                  per-example δ^l, which is N·n_L times larger
    ‖∂L/∂W_l‖     the size of the weight update the layer receives
    saturated_l   fraction of units with σ'(z_l) = a_l(1 − a_l) < 1e-3 (hidden layers only)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from deltaprop.backprop import backprop_trace
from deltaprop.network import Params

SATURATION_THRESHOLD = 1e-3


def evaluate(params: Params, x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
    """Loss, accuracy (threshold 0.5 on every output) and the probabilities. Jit-compatible."""
    trace = backprop_trace(params, x, y)
    probabilities = trace.activations[-1]
    accuracy = jnp.mean((probabilities > 0.5) == (y > 0.5))
    return {"loss": trace.loss, "acc": accuracy, "probabilities": probabilities}


def layer_statistics(params: Params, x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
    """Per-layer ‖δ_l‖, ‖∂L/∂W_l‖ and saturation, keyed `layer_{l}/...`. Jit-compatible.

    δ_l here is ∂L/∂z_l of the batch-mean loss (backprop.py), so its norm does not grow with N;
    the textbook's per-example δ^l is N·n_L times it, example by example.
    """
    trace = backprop_trace(params, x, y)
    stats = {}
    n_layers = len(params)
    for index in range(n_layers):
        name = f"layer_{index + 2}"
        stats[f"{name}/delta_norm"] = jnp.linalg.norm(trace.deltas[index])
        stats[f"{name}/grad_W_norm"] = jnp.linalg.norm(trace.grads[index]["W"])
        stats[f"{name}/grad_b_norm"] = jnp.linalg.norm(trace.grads[index]["b"])
        if index < n_layers - 1:  # hidden layers: σ'(z_l) = a_l(1 − a_l)
            a = trace.activations[index + 1]
            stats[f"{name}/saturated"] = jnp.mean(a * (1 - a) < SATURATION_THRESHOLD)
    return stats


def progress_metrics(params: Params, arrays: dict[str, jax.Array]) -> dict[str, dict[str, jax.Array]]:
    """Everything logged at an evaluation, as one program: `evaluate` on the train, validation
    and test splits (arrays x_train, y_train, x_val, ...) and the per-layer statistics on the
    training split. Jit-compatible."""
    results = {
        split: evaluate(params, arrays[f"x_{split}"], arrays[f"y_{split}"])
        for split in ("train", "val", "test")
    }
    results["statistics"] = layer_statistics(params, arrays["x_train"], arrays["y_train"])
    return results
