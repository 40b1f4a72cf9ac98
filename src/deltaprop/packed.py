"""The packed layout: many members' networks in one set of arrays, the member axis last.

    W: (n_in, n_out, M)    b: (n_out, M)    a, δ: (N, n, M)

Each product of the δ recursion then becomes an elementwise multiply-add along M that XLA:CPU
vectorizes (z[b,o,m] = Σ_i a[b,i,m] W[i,o,m]). This module supplies only those products
(`packed_products`) to the one recursion in backprop.py, and its minibatches to the one epoch in
training.py (`MEMBER_MINIBATCHES`): each member shuffles with its own key exactly as a single run
does (shuffle.permutation, vmapped over the members' keys).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from deltaprop.backprop import Products, forward_pass, manual_value_and_grad, mean_loss
from deltaprop.model import Model, parts_of
from deltaprop.network import Params
from deltaprop.shuffle import permutation
from deltaprop.training import Minibatches

# Products whose contracted axis is at most this long are written as unrolled multiply-adds
# (one XLA loop fusion, vectorized along the member axis); longer ones use einsum.
UNROLL_LIMIT = 128

# XLA:CPU options for the packed program: 512-bit vectors where the CPU has them (AVX-512);
# the packed products are elementwise multiply-adds along the member axis.
COMPILER_OPTIONS = {"xla_cpu_prefer_vector_width": "512"}

# A packed epoch trains its members in chunks whose activations (N, n, m) hold about this many
# numbers (in_member_chunks; sweep.member_chunk=0), m a multiple of LANES (a float32 vector
# of AVX2 along the member axis): [2,16,16,1] at batch 43, 1024 members, runs at ~175k
# member-steps/s with m = 16, 24 or 32, ~65k with m = 23 and ~60k with all at once.
CHUNK_ELEMENTS = 2**14
LANES = 8


def member_chunk(batch_size: int, sizes: Sequence[int]) -> int:
    """Members per chunk: CHUNK_ELEMENTS over the batch times the widest layer, to the nearest
    multiple of LANES (at least LANES)."""
    return max(LANES, round(CHUNK_ELEMENTS / (batch_size * max(sizes)) / LANES) * LANES)

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


def packed_value_and_grad_fn(grad: str, products: Products, model: Model | None = None
                             ) -> Callable:
    """(packed params, x, y) -> (losses (M,), grads): the δ recursion, or jax.grad, for the
    model's cost and hidden activation (None: BCE and sigmoid).

    With autodiff, jax.grad differentiates Σ_m L_m; members share no parameters, so its
    gradient with respect to member m's parameters is ∂L_m/∂θ_m.
    """
    parts = parts_of(model)
    if grad == "manual":
        return partial(manual_value_and_grad, products=products, **parts)
    if grad == "autodiff":

        def total_loss(params, x, y):
            logits = forward_pass(params, x, products, parts["activation"])[0][-1]
            losses = mean_loss(logits, y, parts["loss"])
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
    order = jax.vmap(permutation, in_axes=(0, None))(split[:, 1], n_train)[:, : steps * size]
    return split[:, 0], jnp.moveaxis(order.reshape(-1, steps, size), 0, -1)


def _gather(data: jax.Array, batch_indices: jax.Array) -> jax.Array:
    """data[batch_indices[b, m], j] as (size, n, M), gathered element by element from the
    column-major data so the member axis comes out innermost (a row gather would leave the
    features innermost and every product would read the batch with a stride)."""
    n_rows, n_columns = data.shape
    offsets = jnp.arange(n_columns).reshape((-1,) + (1,) * batch_indices.ndim) * n_rows
    flat = data.T.reshape(-1)[offsets + batch_indices]  # (n, [steps,] size, M): offsets into data.T
    return jnp.moveaxis(flat, 0, -2)


# A packed population's minibatches for training.make_train_epoch: member m's batch is its own
# rows, gathered so that the member axis comes out last, (size, n, M), step by step.
MEMBER_MINIBATCHES = Minibatches(order=_member_orders, gather=_gather, per_epoch=False)


# ------------------------------------------------------------------------- member chunks


def in_member_chunks(epoch_fn: Callable, n_members: int, chunk: int) -> Callable:
    """epoch_fn run on chunks of at most `chunk` members one after another (lax.map), so that
    each chunk's activations stay in cache: a packed array (N, n, M) outgrows it as M grows,
    and the members are independent, so the result is the same.

    M members make C = ⌈M/chunk⌉ chunks of m = ⌈M/C⌉ (rounded up to a multiple of LANES when
    chunk is one: a ragged vector along the member axis costs more than the members it adds);
    the last is filled up with copies of member 0, trained and dropped.
    """
    if n_members <= chunk:
        return epoch_fn
    n_chunks = -(-n_members // chunk)
    size = -(-n_members // n_chunks)
    if chunk % LANES == 0:
        size = -(-size // LANES) * LANES

    def to_chunks(leaf):
        axis = member_axis_of(leaf)
        if axis is None:  # shared (a step count): the same in every chunk
            return jnp.broadcast_to(leaf, (n_chunks, *leaf.shape))
        filler = jnp.repeat(jax.lax.slice_in_dim(leaf, 0, 1, axis=axis),
                            n_chunks * size - n_members, axis=axis)
        leaf = jnp.concatenate([leaf, filler], axis=axis)
        leaf = leaf.reshape(*leaf.shape[:axis], n_chunks, size, *leaf.shape[axis + 1:])
        return jnp.moveaxis(leaf, axis, 0)

    def from_chunks(leaf):  # (C, ..., m) → (..., M)
        if leaf.ndim == 1:  # a shared leaf, broadcast to every chunk
            return leaf[0]
        leaf = jnp.moveaxis(leaf, 0, -2)
        return leaf.reshape(*leaf.shape[:-2], n_chunks * size)[..., :n_members]

    def chunked_epoch(state, x_train, y_train):
        states, losses = jax.lax.map(lambda chunk_state: epoch_fn(chunk_state, x_train, y_train),
                                     jax.tree.map(to_chunks, state))
        losses = losses.reshape(n_chunks * size, -1)[:n_members]  # (C, m, steps) → (M, steps)
        return jax.tree.map(from_chunks, states), losses

    return chunked_epoch


def member_axis_of(leaf: Any) -> int | None:
    """The member axis of a packed state leaf: the last, or None for shared scalars (the step
    count of the optimizer, the epoch)."""
    return None if np.ndim(leaf) == 0 else np.ndim(leaf) - 1
