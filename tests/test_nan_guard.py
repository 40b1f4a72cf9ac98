"""Tests for deltaprop.nan_guard: which members are finite, and the messages naming the epoch and
the first layer affected. (The guard in the training loop is tested in test_loop.py.)"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from deltaprop import packed
from deltaprop.nan_guard import (
    diverged_error,
    divergence_message,
    finite_members,
    first_non_finite_parameter,
    first_non_finite_pre_activation,
)


def tiny_params(dtype=jnp.float32):
    return [
        {"W": jnp.ones((2, 3), dtype), "b": jnp.zeros((3,), dtype)},
        {"W": jnp.ones((3, 1), dtype), "b": jnp.zeros((1,), dtype)},
    ]


# ---------------------------------------------------------------- the pieces


def test_finite_members_of_a_single_run():
    params = tiny_params()
    losses = jnp.array([[0.5, 0.4]], jnp.float32)  # (1 member, 2 steps)
    no_member_axis = lambda leaf: None
    assert finite_members(losses, params, no_member_axis).tolist() == [True]
    assert finite_members(losses.at[0, 1].set(jnp.inf), params, no_member_axis).tolist() == [False]
    params[1]["b"] = params[1]["b"].at[0].set(jnp.nan)
    assert finite_members(losses, params, no_member_axis).tolist() == [False]


def test_finite_members_names_each_member_in_both_layouts():
    rng = np.random.default_rng(0)
    stacked = [{"W": jnp.asarray(rng.normal(size=(3, 2, 4))), "b": jnp.zeros((3, 4))}]
    stacked[0]["W"] = stacked[0]["W"].at[1, 0, 2].set(jnp.nan)  # member 1's W
    losses = jnp.zeros((3, 5)).at[2, 4].set(jnp.inf)  # member 2's last step
    first_axis = lambda leaf: 0
    assert finite_members(losses, stacked, first_axis).tolist() == [True, False, False]
    assert finite_members(losses, packed.pack(stacked),
                          packed.member_axis_of).tolist() == [True, False, False]


def test_first_non_finite_parameter_in_layer_order():
    params = tiny_params()
    assert first_non_finite_parameter(params) is None
    params[1]["b"] = params[1]["b"].at[0].set(jnp.nan)
    assert first_non_finite_parameter(params) == "layer 3 b"
    params[0]["W"] = params[0]["W"].at[1, 2].set(-jnp.inf)
    assert first_non_finite_parameter(params) == "layer 2 W"


def test_message_names_epoch_and_layer():
    params = tiny_params()
    params[0]["W"] = params[0]["W"].at[0, 0].set(jnp.nan)
    losses = jnp.array([0.3, jnp.nan], jnp.float32)
    assert divergence_message(3, losses, params) == (
        "loss became non-finite at epoch 3; first non-finite parameter: layer 2 W"
    )
    finite_losses = jnp.array([0.3, 0.2], jnp.float32)
    assert divergence_message(5, finite_losses, params).startswith(
        "parameters became non-finite at epoch 5; first non-finite parameter: layer 2 W"
    )


def test_overflowing_pre_activation_is_named_when_parameters_are_finite():
    params = tiny_params()
    params[1]["W"] = params[1]["W"] * 3e38  # finite, but a_2 W_3 sums three of them: inf
    x = jnp.ones((4, 2), jnp.float32)
    assert first_non_finite_pre_activation(params, x) == "layer 3 z"
    message = divergence_message(2, jnp.array([jnp.inf], jnp.float32), params, x)
    assert message == (
        "loss became non-finite at epoch 2; all parameters are still finite, but the weights "
        "are so large that the first overflow is at layer 3 z"
    )


@pytest.mark.parametrize(("activation", "z_2", "w_3", "expected"), [
    ("relu", 1e30, 1e10, "layer 3 z"),  # relu passes z_2 = 2e30 on: 6e40 overflows
    ("tanh", -1e30, 3e38, "layer 3 z"),  # tanh(z_2) = −1: −3·3e38 overflows
    ("sigmoid", 1e30, 1e10, None),  # σ(z_2) = 1: z_3 = 3e10, nothing overflows
    ("sigmoid", -1e30, 3e38, None),  # σ(z_2) = 0: z_3 = 0
])
def test_the_overflowing_layer_is_found_with_the_runs_own_activation(activation, z_2, w_3,
                                                                     expected):
    params = [{"W": jnp.full((2, 3), z_2 / 2, jnp.float32), "b": jnp.zeros(3, jnp.float32)},
              {"W": jnp.full((3, 3), w_3, jnp.float32), "b": jnp.zeros(3, jnp.float32)},
              {"W": jnp.ones((3, 1), jnp.float32), "b": jnp.zeros(1, jnp.float32)}]
    x = jnp.ones((4, 2), jnp.float32)
    assert first_non_finite_pre_activation(params, x, activation) == expected


def test_diverged_error_names_what_is_left():
    error = diverged_error("loss became non-finite at epoch 3", "last good checkpoint: c/2 (epoch 2)")
    assert str(error) == (
        "loss became non-finite at epoch 3; last good checkpoint: c/2 (epoch 2). Lower "
        "optimizer.lr, or rerun with trainer.debug_nans=true to find the operation"
    )
    assert isinstance(error, RuntimeError)
