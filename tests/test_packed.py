"""Tests for deltaprop.packed: the member-last layout's products, fed to the one δ recursion,
equal the plain pass member by member."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deltaprop import packed
from deltaprop.backprop import backprop_trace, manual_value_and_grad
from deltaprop.losses import loss_fn
from deltaprop.model import Model


def random_members(seed, sizes, n_members, batch, dtype=jnp.float64):
    """Stacked params (M, ...) with nonzero biases, and one minibatch per member:
    x (M, N, n_1), y (M, N, n_L). NumPy draws them: nothing to compile."""
    rng = np.random.default_rng(seed)
    stacked = [
        {
            "W": jnp.asarray(rng.normal(size=(n_members, n_in, n_out)) / n_in**0.5, dtype),
            "b": jnp.asarray(rng.normal(size=(n_members, n_out)) * 0.3, dtype),
        }
        for n_in, n_out in itertools.pairwise(sizes)
    ]
    x = jnp.asarray(rng.normal(size=(n_members, batch, sizes[0])) * 3, dtype)
    y = jnp.asarray(rng.random((n_members, batch, sizes[-1])) < 0.5, dtype)
    return stacked, x, y


def to_packed_batch(array):
    """(M, N, n) → (N, n, M)."""
    return jnp.moveaxis(array, 0, -1)


def max_difference(tree_a, tree_b) -> float:
    return max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(tree_a), jax.tree.leaves(tree_b), strict=True)
    )


# ------------------------------------------------------------------------- the packed pass


def test_pack_and_unpack_move_the_member_axis():
    stacked, _, _ = random_members(0, [3, 5, 2], 4, 1)
    member_last = packed.pack(stacked)
    assert member_last[0]["W"].shape == (3, 5, 4) and member_last[0]["b"].shape == (5, 4)
    np.testing.assert_array_equal(member_last[1]["W"][:, :, 2], stacked[1]["W"][2])
    assert max_difference(packed.unpack(member_last), stacked) == 0


@pytest.mark.parametrize(
    "options", [{}, {"unroll_limit": 0}, {"sharded_batch": True}],
    ids=["unrolled", "einsum", "batch-einsum"],
)
def test_packed_products_in_the_one_recursion_match_manual_grad_per_member(options):
    stacked, x, y = random_members(1, [3, 6, 5, 2], n_members=4, batch=7)
    expected_loss, expected_grads = jax.jit(jax.vmap(manual_value_and_grad))(stacked, x, y)

    products = packed.packed_products(**options)
    trace = jax.jit(lambda p, x, y: backprop_trace(p, x, y, products=products))
    result = trace(packed.pack(stacked), to_packed_batch(x), to_packed_batch(y))

    np.testing.assert_allclose(result.loss, expected_loss, rtol=1e-13, atol=0)
    assert max_difference(packed.unpack(result.grads), expected_grads) < 1e-13
    assert max_difference(expected_grads, jax.tree.map(jnp.zeros_like, expected_grads)) > 1e-3
    # δ_l of every member, in the packed layout: (N, n_l, M)
    expected_deltas = jax.jit(jax.vmap(lambda p, x, y: backprop_trace(p, x, y).deltas))(
        stacked, x, y
    )
    for got, expected in zip(result.deltas, expected_deltas, strict=True):
        np.testing.assert_allclose(jnp.moveaxis(got, -1, 0), expected, rtol=1e-12, atol=1e-15)


def test_packed_autodiff_matches_jax_grad_of_loss_fn_per_member():
    stacked, x, y = random_members(2, [2, 4, 4, 1], n_members=3, batch=5)
    expected_loss, expected_grads = jax.jit(jax.vmap(jax.value_and_grad(loss_fn)))(stacked, x, y)

    value_and_grad = jax.jit(packed.packed_value_and_grad_fn("autodiff", packed.packed_products()))
    loss, grads = value_and_grad(packed.pack(stacked), to_packed_batch(x), to_packed_batch(y))

    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13, atol=0)
    assert max_difference(packed.unpack(grads), expected_grads) < 1e-13


def test_packed_bf16_products_match_the_bf16_manual_pass():
    stacked, x, y = random_members(3, [3, 8, 1], n_members=2, batch=6, dtype=jnp.float32)
    expected = jax.jit(jax.vmap(lambda p, x, y: manual_value_and_grad(p, x, y, jnp.bfloat16)))(
        stacked, x, y
    )
    full_precision = jax.jit(jax.vmap(manual_value_and_grad))(stacked, x, y)
    value_and_grad = packed.packed_value_and_grad_fn(
        "manual", packed.packed_products(jnp.bfloat16)
    )
    got = jax.jit(value_and_grad)(packed.pack(stacked), to_packed_batch(x), to_packed_batch(y))
    # bf16 operands are exact in float32 products; only the order of the sums differs.
    assert max_difference(packed.unpack(got[1]), expected[1]) < 1e-6
    assert max_difference(full_precision[1], expected[1]) > 1e-5  # bf16 did change something


@pytest.mark.parametrize(("loss", "activation"), [("mse", "sigmoid"), ("bce", "tanh"),
                                                  ("mse", "relu")])
def test_packed_pass_matches_the_plain_pass_for_each_cost_and_activation(loss, activation):
    stacked, x, y = random_members(4, [3, 6, 5, 2], n_members=3, batch=7)
    options = {"loss": loss, "activation": activation}
    expected_loss, expected_grads = jax.jit(
        jax.vmap(lambda p, x, y: manual_value_and_grad(p, x, y, **options))
    )(stacked, x, y)
    for grad in ("manual", "autodiff"):
        value_and_grad = packed.packed_value_and_grad_fn(
            grad, packed.packed_products(), Model.named([3, 6, 5, 2], **options))
        losses, grads = jax.jit(value_and_grad)(
            packed.pack(stacked), to_packed_batch(x), to_packed_batch(y)
        )
        np.testing.assert_allclose(losses, expected_loss, rtol=1e-13, atol=0)
        assert max_difference(packed.unpack(grads), expected_grads) < 1e-13, grad
