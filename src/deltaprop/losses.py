"""The costs on the sigmoid output a = σ(z_L), each with its hand-written δ_L beside it.

    loss=bce   binary cross-entropy, computed from the logits z (below)
    loss=mse   Nielsen's quadratic cost ½(a − y)², on the same sigmoid outputs

Both are reduced the same way: L = the mean over all N·n_L elements. `output_delta` is each
cost's dl/dz_L per element (the textbook's δ^L); backprop.py divides it by N·n_L to get δ_L of
the mean loss.

For a logit z and a target y ∈ {0, 1}, with a = σ(z):

    l(z, y) = −y log a − (1 − y) log(1 − a)
            = max(z, 0) − z y + log(1 + e^{−|z|})        (finite for every finite z)

and dl/dz = σ(z) − y exactly. Keeping log1p(e^{−|z|}) as a separate term keeps tiny losses
accurate (softplus(z) − z would cancel it away for large z with y = 1). max(z, 0) is written as
where(z ≥ 0, z, 0) so that autodiff also gets σ(0) − y = 1/2 − y at the kink z = 0
(jnp.maximum splits its tie and gives −y there). The naive form log(σ(z)) breaks once σ(z) rounds to 1.0
(z ≳ 16.6 in float32, z ≳ 36.7 in float64): log(1 − a) = −inf.

The quadratic cost l(a, y) = ½(a − y)² has dl/dz = (a − y) σ'(z) = (a − y) a(1 − a): the σ'
that cross-entropy cancels stays, so a saturated wrong output (a ≈ 1, y = 0) learns slowly
(Nielsen ch. 3, the learning slowdown).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from deltaprop.choices import LossName
from deltaprop.network import Activation, Params, check_batch, forward


def binary_cross_entropy_with_logits(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Element-wise BCE l(z, y) = max(z, 0) − z y + log1p(e^{−|z|}); the caller reduces."""
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels, logits.dtype)
    positive_part = jnp.where(logits >= 0, logits, 0)  # max(z, 0), with derivative 1 at z = 0
    return positive_part - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def quadratic_cost(outputs: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Element-wise quadratic cost l(a, y) = ½(a − y)² of the outputs a = σ(z_L); the caller
    reduces."""
    outputs = jnp.asarray(outputs)
    return 0.5 * jnp.square(outputs - jnp.asarray(labels, outputs.dtype))


def _quadratic_cost_of_logits(logits: jax.Array, labels: ArrayLike) -> jax.Array:
    return quadratic_cost(jax.nn.sigmoid(logits), labels)  # l = ½(σ(z_L) − y)²


def _bce_output_delta(z: jax.Array, a: jax.Array, y: jax.Array) -> jax.Array:
    return a - y  # dl/dz = σ(z) − y: σ'(z) cancels against the log


def _mse_output_delta(z: jax.Array, a: jax.Array, y: jax.Array) -> jax.Array:
    return (a - y) * (a * (1 - a))  # dl/dz = (a − y) σ'(z), σ'(z) = a(1 − a)


@dataclass(frozen=True)
class Cost:
    """One cost on the sigmoid outputs: l(z_L, y) per element, from the logits, and beside it
    its dl/dz_L written by hand (the textbook's δ^L, before the 1/(N·n_L) of the mean), from
    z_L, a_L = σ(z_L) and y (both costs read σ'(z_L) off a_L)."""

    name: str
    elementwise: Callable[[jax.Array, ArrayLike], jax.Array]  # l(z_L, y), the caller reduces
    output_delta: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]  # dl/dz_L

    def __str__(self) -> str:
        return self.name


BCE = Cost("bce", binary_cross_entropy_with_logits, _bce_output_delta)
MSE = Cost("mse", _quadratic_cost_of_logits, _mse_output_delta)
COSTS = {entry.name: entry for entry in (BCE, MSE)}  # by LossName


def cost_named(loss: str | Cost) -> Cost:
    """The entry for the config's `loss` name (an entry is returned as it is)."""
    if isinstance(loss, Cost):
        return loss
    if str(loss) not in COSTS:
        raise ValueError(f"loss={str(loss)!r} must be one of {', '.join(LossName.values())}")
    return COSTS[str(loss)]


def elementwise_loss(loss: str | Cost, logits: jax.Array, labels: ArrayLike) -> jax.Array:
    """l(z_L, y) per element for the cost `loss` ("bce", "mse" or its entry), from the logits."""
    return cost_named(loss).elementwise(logits, labels)


def output_delta(loss: str | Cost, z: jax.Array, a: jax.Array, y: jax.Array) -> jax.Array:
    """dl/dz_L per element, by hand (the textbook's δ^L, before the 1/(N·n_L) of the mean).

    Args:
      loss: "bce", "mse" or its `Cost`.
      z: (N, n_L) logits z_L; a: (N, n_L) outputs a_L = σ(z_L); y: (N, n_L) targets.
    """
    return cost_named(loss).output_delta(z, a, y)


def loss_fn(
    params: Params,
    x: ArrayLike,
    y: ArrayLike,
    matmul_dtype: DTypeLike | None = None,
    loss: str | Cost = "bce",
    activation: str | Activation = "sigmoid",
) -> jax.Array:
    """Mean cost over all N·n_L elements; for bce, torch's BCEWithLogitsLoss with
    reduction="mean", for mse, the mean of ½(σ(z_L) − y)² (half of torch's MSELoss on σ(z_L)).

    Args:
      params: from `init_params`.
      x: (N, n_1) inputs.
      y: (N, n_L) targets in {0, 1}.
      loss: "bce" or "mse", or its `Cost` entry.
      activation: the hidden layers' φ: a name or a `network.Activation` entry.

    Returns:
      A scalar.
    """
    check_batch(params, x, y)
    return jnp.mean(elementwise_loss(loss, forward(params, x, matmul_dtype, activation), y))
