"""Binary cross-entropy computed from logits.

For a logit z and a target y ∈ {0, 1}, with a = σ(z):

    l(z, y) = −y log a − (1 − y) log(1 − a)
            = max(z, 0) − z y + log(1 + e^{−|z|})        (finite for every finite z)

and dl/dz = σ(z) − y exactly. Keeping log1p(e^{−|z|}) as a separate term keeps tiny losses
accurate (softplus(z) − z would cancel it away for large z with y = 1). max(z, 0) is written as
where(z ≥ 0, z, 0) so that autodiff also gets σ(0) − y = 1/2 − y at the kink z = 0
(jnp.maximum splits its tie and gives −y there). The naive form log(σ(z)) breaks once σ(z) rounds to 1.0
(z ≳ 16.6 in float32, z ≳ 36.7 in float64): log(1 − a) = −inf.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from deltaprop.network import Params, check_batch, forward


def binary_cross_entropy_with_logits(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Element-wise BCE l(z, y) = max(z, 0) − z y + log1p(e^{−|z|}); the caller reduces."""
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels, logits.dtype)
    positive_part = jnp.where(logits >= 0, logits, 0)  # max(z, 0), with derivative 1 at z = 0
    return positive_part - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def loss_fn(
    params: Params, x: ArrayLike, y: ArrayLike, matmul_dtype: DTypeLike | None = None
) -> jax.Array:
    """Mean BCE over all N·n_L elements (torch's BCEWithLogitsLoss with reduction="mean").

    Args:
      params: from `init_params`.
      x: (N, n_1) inputs.
      y: (N, n_L) targets in {0, 1}.

    Returns:
      A scalar.
    """
    check_batch(params, x, y)
    return jnp.mean(binary_cross_entropy_with_logits(forward(params, x, matmul_dtype), y))
