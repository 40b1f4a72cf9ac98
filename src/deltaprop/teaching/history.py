"""The first steps of training, every number of each: the data of the page that steps through them.

`training_history(params, x, y, learning_rate, steps)` runs plain gradient descent on one batch,

    θ_{t+1} = θ_t − η ∂L/∂θ(θ_t),        t = 0, ..., T − 1,

in float64, as one jitted `lax.scan` whose step is `deltaprop.backprop.backprop_trace`, and keeps
for every step t the state before its update: W_l, b_l, z_l, a_l, δ_l = ∂L/∂z_l (of the mean loss),
∂L/∂W_l and ∂L/∂b_l. Each step is checked against jax.grad (∂L/∂θ, and δ_l as the gradient with
respect to an offset added to z_l). Step 0 is the worked example's pass; the renderer (page.py)
only formats these arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from deltaprop.backprop import backprop_trace
from deltaprop.gradient_check import TOLERANCE_AUTODIFF, relative_error
from deltaprop.losses import loss_fn
from deltaprop.network import Params, check_batch, layer_sizes
from deltaprop.precision import float64_scope
from deltaprop.teaching.worked_example import autodiff_deltas


@dataclass(frozen=True, eq=False)
class TrainingHistory:
    """T steps of gradient descent on one batch. Per-layer tuples hold layer l at index l − 2.

    Shapes: T steps, N examples, n_l units. Weights and biases have T + 1 states (the last is
    after the last update); everything else is the state before update t, t = 0..T − 1.
    """

    x: np.ndarray  # a_1, (N, n_1)
    y: np.ndarray  # (N, n_L)
    sizes: tuple[int, ...]  # (n_1, ..., n_L)
    learning_rate: float  # η
    weights: tuple[np.ndarray, ...]  # W_l, (T + 1, n_{l−1}, n_l)
    biases: tuple[np.ndarray, ...]  # b_l, (T + 1, n_l)
    pre_activations: tuple[np.ndarray, ...]  # z_l, (T, N, n_l)
    activations: tuple[np.ndarray, ...]  # a_l = σ(z_l), (T, N, n_l)
    deltas: tuple[np.ndarray, ...]  # δ_l = ∂L/∂z_l, (T, N, n_l)
    grad_weights: tuple[np.ndarray, ...]  # ∂L/∂W_l = a_{l−1}ᵀ δ_l, (T, n_{l−1}, n_l)
    grad_biases: tuple[np.ndarray, ...]  # ∂L/∂b_l = Σ_batch δ_l, (T, n_l)
    losses: np.ndarray  # L(θ_t), (T + 1,)
    errors: np.ndarray  # per step, the largest relative error against jax.grad, (T,)
    tolerance: float

    @property
    def steps(self) -> int:
        return len(self.errors)

    @property
    def passed(self) -> bool:
        return bool(np.all(self.errors <= self.tolerance))

    def delta_norms(self) -> np.ndarray:
        """‖δ_l‖ over the batch at every step, (T, L − 1): how much error reaches layer l."""
        return np.stack([np.linalg.norm(delta, axis=(1, 2)) for delta in self.deltas], axis=1)

    def mean_sigmoid_slopes(self) -> np.ndarray:
        """Mean σ'(z_l) = a_l(1 − a_l) of each hidden layer at every step, (T, L − 2): at most
        1/4, and near 0 when the layer's units saturate."""
        hidden = self.activations[:-1]
        return np.stack([np.mean(a * (1 - a), axis=(1, 2)) for a in hidden], axis=1)


@partial(jax.jit, static_argnames="steps")
def _descend(params: Params, x: jax.Array, y: jax.Array, learning_rate, steps: int):
    """`steps` updates θ ← θ − η ∂L/∂θ by backprop_trace, each with jax.grad's ∂L/∂θ and δ_l."""

    def step(params, _):
        trace = backprop_trace(params, x, y)
        checks = (jax.grad(loss_fn)(params, x, y), autodiff_deltas(params, x, y))
        new_params = jax.tree.map(lambda p, g: p - learning_rate * g, params, trace.grads)
        return new_params, (params, trace, checks)

    final_params, (states, traces, checks) = jax.lax.scan(step, params, length=steps)
    return final_params, states, traces, checks, loss_fn(final_params, x, y)


def _step_errors(traces, checks, steps: int) -> np.ndarray:
    """Per step t: max over layers of the relative errors of ∂L/∂W_l, ∂L/∂b_l and δ_l."""
    autodiff_grads, deltas_by_autodiff = checks
    errors = np.zeros(steps)
    ours = [*jax.tree.leaves(traces.grads), *traces.deltas]  # each with a leading step axis
    theirs = [*jax.tree.leaves(autodiff_grads), *deltas_by_autodiff]
    for t in range(steps):
        errors[t] = max(relative_error(a[t], b[t]) for a, b in zip(ours, theirs, strict=True))
    return errors


def training_history(
    params: Params,
    x: ArrayLike,
    y: ArrayLike,
    learning_rate: float,
    steps: int,
    tolerance: float = TOLERANCE_AUTODIFF,
) -> TrainingHistory:
    """Run `steps` steps of gradient descent on (x, y) in float64, keeping every number.

    Args:
      params: [{"W": (n_{l−1}, n_l), "b": (n_l,)}] for l = 2..L.
      x: (N, n_1) inputs.
      y: (N, n_L) targets in {0, 1}.
      learning_rate: η.
      steps: T ≥ 1.
      tolerance: largest relative error (float64) accepted against jax.grad.
    """
    check_batch(params, x, y)
    if steps < 1 or not learning_rate > 0:
        raise ValueError(f"steps={steps!r} must be >= 1 and learning_rate={learning_rate!r} > 0")
    with float64_scope():
        params = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float64), params)
        x, y = jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)
        final, states, traces, checks, final_loss = jax.device_get(
            _descend(params, x, y, learning_rate, steps=int(steps))
        )
        x, y = jax.device_get((x, y))

    def with_final(states, last):  # the T states before each update, then the one after
        return np.concatenate([states, last[None]])

    return TrainingHistory(
        x=x,
        y=y,
        sizes=layer_sizes(params),
        learning_rate=float(learning_rate),
        weights=tuple(with_final(s["W"], f["W"]) for s, f in zip(states, final, strict=True)),
        biases=tuple(with_final(s["b"], f["b"]) for s, f in zip(states, final, strict=True)),
        pre_activations=tuple(traces.pre_activations),
        activations=tuple(traces.activations[1:]),  # a_1 = x is not repeated per step
        deltas=tuple(traces.deltas),
        grad_weights=tuple(grads["W"] for grads in traces.grads),
        grad_biases=tuple(grads["b"] for grads in traces.grads),
        losses=np.append(traces.loss, final_loss),
        errors=_step_errors(traces, checks, int(steps)),
        tolerance=tolerance,
    )
