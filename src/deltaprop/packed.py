"""The packed layout: many members' networks in one set of arrays, the member axis last.

    W: (n_in, n_out, M)    b: (n_out, M)    a, δ: (N, n, M)

Each product of the δ recursion then becomes an elementwise multiply-add along M that XLA:CPU
vectorizes (z[b,o,m] = Σ_i a[b,i,m] W[i,o,m]). This module supplies only those products
(`packed_products`) to the one recursion in backprop.py, and its minibatches to the one epoch in
training.py (`MEMBER_MINIBATCHES`): each member shuffles with its own key exactly as a single run
does, and each epoch's shuffles (jax.random.permutation, the same integers) skip XLA:CPU's slow
key-value sort.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from deltaprop.backprop import Products, forward_pass, manual_value_and_grad, mean_loss
from deltaprop.network import Params
from deltaprop.training import Minibatches

# Products whose contracted axis is at most this long are written as unrolled multiply-adds
# (one XLA loop fusion, vectorized along the member axis); longer ones use einsum.
UNROLL_LIMIT = 128

# XLA:CPU options for the packed program: 512-bit vectors where the CPU has them (AVX-512);
# the packed products are elementwise multiply-adds along the member axis.
COMPILER_OPTIONS = {"xla_cpu_prefer_vector_width": "512"}

PackedParams = list[dict[str, jax.Array]]  # [{"W": (n_in, n_out, M), "b": (n_out, M)}]


def pack(stacked: Params) -> PackedParams:
    """Member axis first (M, n_in, n_out) → member axis last (n_in, n_out, M)."""
    return jax.tree.map(lambda leaf: _numpy_or_jax(leaf).moveaxis(leaf, 0, -1), stacked)


def unpack(packed: PackedParams) -> Params:
    """Member axis last → member axis first; `unpack(p)[i]`-slices are single-run params.
    NumPy arrays (params pulled to the host) stay NumPy."""
    return jax.tree.map(lambda leaf: _numpy_or_jax(leaf).moveaxis(leaf, -1, 0), packed)


def _numpy_or_jax(array):
    return np if isinstance(array, np.ndarray) else jnp


# ----------------------------------------------------------------------- the products


def _pairwise_sum(terms: list[jax.Array]) -> jax.Array:
    """Σ terms as a balanced tree: short dependency chains, so the adds pipeline."""
    while len(terms) > 1:
        paired = [terms[k] + terms[k + 1] for k in range(0, len(terms) - 1, 2)]
        terms = paired + terms[len(paired) * 2 :]
    return terms[0]


def _rounded(array: jax.Array, matmul_dtype: DTypeLike | None) -> jax.Array:
    """Operands of a product in matmul_dtype (bf16), products and sums in the array's dtype.

    A bf16 × bf16 product is exact in float32, so this equals a bf16 matmul with float32
    accumulation (network.linear) up to the order of the sum.
    """
    if matmul_dtype is None:
        return array
    return array.astype(matmul_dtype).astype(array.dtype)


def packed_linear(
    a: jax.Array, layer: dict[str, jax.Array], matmul_dtype=None, unroll_limit=UNROLL_LIMIT
) -> jax.Array:
    """z[b,o,m] = Σ_i a[b,i,m] W[i,o,m] + b[o,m]: every member's a W + b at once.

    Args:
      a: (N, n_in, M) activations.
      layer: {"W": (n_in, n_out, M), "b": (n_out, M)}.

    Returns:
      (N, n_out, M).
    """
    a, W = _rounded(a, matmul_dtype), _rounded(layer["W"], matmul_dtype)
    if W.shape[0] > unroll_limit:
        return jnp.einsum("bim,iom->bom", a, W) + layer["b"]
    return _pairwise_sum([a[:, i, None, :] * W[i] for i in range(W.shape[0])]) + layer["b"]


def _delta_times_weights(delta, W, matmul_dtype=None, unroll_limit=UNROLL_LIMIT) -> jax.Array:
    """(δ_{l+1} W_{l+1}ᵀ)[b,i,m] = Σ_o δ[b,o,m] W[i,o,m]; δ: (N, n_out, M) → (N, n_in, M)."""
    delta, W = _rounded(delta, matmul_dtype), _rounded(W, matmul_dtype)
    if W.shape[1] > unroll_limit:
        return jnp.einsum("bom,iom->bim", delta, W)
    return _pairwise_sum([delta[:, None, o, :] * W[:, o, :] for o in range(W.shape[1])])


def _weight_gradient(a_prev, delta, matmul_dtype=None, unroll_limit=UNROLL_LIMIT) -> jax.Array:
    """(a_{l−1}ᵀ δ_l)[i,o,m] = Σ_b a[b,i,m] δ[b,o,m]; → (n_in, n_out, M)."""
    a_prev, delta = _rounded(a_prev, matmul_dtype), _rounded(delta, matmul_dtype)
    if a_prev.shape[0] > unroll_limit:
        return jnp.einsum("bim,bom->iom", a_prev, delta)
    return _pairwise_sum(
        [a_prev[b, :, None, :] * delta[b, None, :, :] for b in range(a_prev.shape[0])]
    )


def _batch_sum(delta: jax.Array, unroll_limit=UNROLL_LIMIT) -> jax.Array:
    """Σ_b δ[b,o,m] → (n_out, M), as adds that fuse with the parameter update."""
    if delta.shape[0] > unroll_limit:
        return jnp.sum(delta, axis=0)
    return _pairwise_sum([delta[b] for b in range(delta.shape[0])])


def packed_products(
    matmul_dtype: DTypeLike | None = None,
    unroll_limit: int = UNROLL_LIMIT,
    sharded_batch: bool = False,
) -> Products:
    """The products of backprop.backprop_trace for member-last arrays.

    Contractions over at most `unroll_limit` terms are unrolled multiply-adds, longer ones
    einsums. With `sharded_batch` (data parallel: the batch axis split across devices) the two
    sums over the batch are always einsums, which XLA all-reduces, not one slice per example.
    """
    batch_limit = 0 if sharded_batch else unroll_limit
    return Products(
        linear=partial(packed_linear, matmul_dtype=matmul_dtype, unroll_limit=unroll_limit),
        backward=partial(
            _delta_times_weights, matmul_dtype=matmul_dtype, unroll_limit=unroll_limit
        ),
        weight_gradient=partial(
            _weight_gradient, matmul_dtype=matmul_dtype, unroll_limit=batch_limit
        ),
        batch_sum=partial(_batch_sum, unroll_limit=batch_limit),
    )


def packed_value_and_grad_fn(
    grad: str, products: Products, loss: str = "bce", activation: str = "sigmoid"
) -> Callable:
    """(packed params, x, y) -> (losses (M,), grads): the δ recursion, or jax.grad.

    With autodiff, jax.grad differentiates Σ_m L_m; members share no parameters, so its
    gradient with respect to member m's parameters is ∂L_m/∂θ_m. `loss` and `activation` as
    in backprop.backprop_trace.
    """
    if grad == "manual":
        return partial(manual_value_and_grad, products=products, loss=loss,
                       activation=activation)
    if grad == "autodiff":

        def total_loss(params, x, y):
            logits = forward_pass(params, x, products, activation)[0][-1]
            losses = mean_loss(logits, y, loss)
            return jnp.sum(losses), losses

        value_and_grad = jax.value_and_grad(total_loss, has_aux=True)

        def autodiff_value_and_grad(params, x, y):
            (_, losses), grads = value_and_grad(params, x, y)
            return losses, grads

        return autodiff_value_and_grad
    raise ValueError(f"trainer.grad={grad!r} must be 'manual' or 'autodiff'")


# ------------------------------------------------------------------------- minibatches


def _member_orders(keys: jax.Array, n_train: int, steps: int, size: int):
    """Each member shuffles with its own key exactly as a single run does
    (key, shuffle_key = split(key); permutation(shuffle_key, n_train)): (steps, size, M)."""
    split = jax.vmap(jax.random.split)(keys)
    order = member_permutations(split[:, 1], n_train)[:, : steps * size]
    return split[:, 0], jnp.moveaxis(order.reshape(-1, steps, size), 0, -1)


def _gather(data: jax.Array, batch_indices: jax.Array) -> jax.Array:
    """data[batch_indices[b, m], j] as (size, n, M), gathered element by element from the
    column-major data so the member axis comes out innermost (a row gather would leave the
    features innermost and every product would read the batch with a stride)."""
    n_rows, n_columns = data.shape
    columns = jnp.arange(n_columns)[:, None, None] * n_rows  # (n, 1, 1) offsets into data.T
    flat = data.T.reshape(-1)[columns + batch_indices]  # (n, size, M)
    return jnp.swapaxes(flat, 0, 1)


# A packed population's minibatches for training.make_train_epoch: member m's batch is its own
# rows, gathered so that the member axis comes out last, (size, n, M).
MEMBER_MINIBATCHES = Minibatches(order=_member_orders, gather=_gather)


def member_permutations(keys: jax.Array, n: int) -> jax.Array:
    """jax.random.permutation(key, n) for each of M keys, as an (M, n) array of the same integers.

    jax.random.permutation shuffles by sorting: each round splits off a subkey, draws 32 random
    bits per element and reorders by a stable sort on them. That stable sort is done here
    without XLA:CPU's key-value sort, which costs as much as a quarter of a small network's
    epoch (see `_stable_argsort_rows`). Checked against jax.random.permutation in the tests.
    """
    rounds = math.ceil(3 * math.log(max(1, n)) / math.log(np.iinfo(np.uint32).max))
    order = jnp.broadcast_to(jnp.arange(n), (keys.shape[0], n))
    for _ in range(rounds):
        split = jax.vmap(jax.random.split)(keys)
        keys, subkeys = split[:, 0], split[:, 1]
        bits = jax.vmap(lambda key: jax.random.bits(key, (n,), jnp.uint32))(subkeys)
        order = jnp.take_along_axis(order, _stable_argsort_rows(bits), axis=1)
    return order


def _stable_argsort_rows(bits: jax.Array) -> jax.Array:
    """jnp.argsort(bits, axis=1, stable=True) for uint32 rows (M, n).

    Sort keys (the high 32 − k bits of each key, then its index in the low k = ⌈log₂ n⌉ bits)
    are distinct, so one single-operand sort orders them by (high bits, index). Only neighbours
    with equal high bits can then be out of order: one compare-exchange of adjacent pairs on
    the full key fixes every such pair, and a check of the result sends anything else (three
    equal high parts in a row: about 3e-6 per row at n = 700) to the stable key-value sort.
    """
    n = bits.shape[1]
    index_bits = max(1, (n - 1).bit_length())
    if index_bits > 12:  # too few high bits left: runs of equal high bits would be common
        return jnp.argsort(bits, axis=1, stable=True)
    index = jnp.arange(n, dtype=jnp.uint32)
    keys = ((bits >> index_bits) << index_bits) | index
    order = (jnp.sort(keys, axis=1) & jnp.uint32((1 << index_bits) - 1)).astype(jnp.int32)
    full = jnp.take_along_axis(bits, order, axis=1)

    # Swap each out-of-order neighbour pair (j, j+1); strict, so equal keys keep index order.
    swap = full[:, :-1] > full[:, 1:]
    with_next = jnp.pad(swap, ((0, 0), (0, 1)))  # element j moves to j+1
    with_previous = jnp.pad(swap, ((0, 0), (1, 0)))  # element j moves to j−1

    def exchanged(array):
        following = jnp.pad(array[:, 1:], ((0, 0), (0, 1)))
        preceding = jnp.pad(array[:, :-1], ((0, 0), (1, 0)))
        return jnp.where(with_next, following, jnp.where(with_previous, preceding, array))

    full, order = exchanged(full), exchanged(order)
    # Strictly ascending in (key, index) holds for the stable argsort and nothing else.
    ascending = (full[:, 1:] > full[:, :-1]) | (
        (full[:, 1:] == full[:, :-1]) & (order[:, 1:] > order[:, :-1])
    )
    return jax.lax.cond(
        jnp.all(ascending),
        lambda: order,
        lambda: jnp.argsort(bits, axis=1, stable=True).astype(jnp.int32),
    )


def member_axis_of(leaf: Any) -> int | None:
    """The member axis of a packed state leaf: the last, or None for shared scalars (the step
    count of the optimizer, the epoch)."""
    return None if np.ndim(leaf) == 0 else np.ndim(leaf) - 1
