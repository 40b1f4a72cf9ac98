"""Tests for deltaprop.population: who the members are and where each starts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from deltaprop.network import init_params
from deltaprop.population import (
    Member,
    init_members,
    initial_params,
    member_grid,
    member_keys,
    with_hyperparameters,
)

SIZES = [2, 5, 3, 1]


def test_the_grid_is_lr_major_with_consecutive_seeds():
    members = member_grid(5, 2, [0.1, 0.3])
    assert [(m.index, m.seed, m.lr) for m in members] == [
        (0, 5, 0.1), (1, 6, 0.1), (2, 5, 0.3), (3, 6, 0.3)
    ]
    assert members[3].name == "seed6-lr0.3"
    assert member_grid(0, 1, [1.0]) == [Member(0, 0, 1.0)]  # a single run


def test_the_grid_is_the_product_of_every_axis_with_seeds_innermost():
    members = member_grid(0, 2, [0.1], [0.0, 0.01], [0.9], [0.5, 2.0])
    assert len(members) == 8 and [m.index for m in members] == list(range(8))
    points = [(m.weight_decay, m.init_scale) for m in members[::2]]
    assert points == [(0.0, 0.5), (0.0, 2.0), (0.01, 0.5), (0.01, 2.0)]  # the last axis fastest
    assert [m.seed for m in members[:2]] == [0, 1] and {m.momentum for m in members} == {0.9}
    assert members[0].swept == ("lr", "weight_decay", "init_scale")  # momentum: one value
    assert members[7].name == "seed1-lr0.1-weight_decay0.01-init_scale2"
    assert members[7].hyperparameters() == {"lr": 0.1, "weight_decay": 0.01, "momentum": 0.9,
                                            "init_scale": 2.0}


def test_init_scale_multiplies_every_initial_parameter():
    base = initial_params(3, SIZES, "nielsen", jnp.float64)
    scaled = initial_params(3, SIZES, "nielsen", jnp.float64, scale=0.5)
    for got, want in zip(jax.tree.leaves(scaled), jax.tree.leaves(base)):
        np.testing.assert_array_equal(got, 0.5 * want)
    params, _ = init_members([3, 3], SIZES, "nielsen", jnp.float64, [1.0, 0.5])
    for got, want, one in zip(jax.tree.leaves(params), jax.tree.leaves(scaled),
                              jax.tree.leaves(base)):
        # compiled (vmapped) against eager: the same up to 1 ulp of N(0, 1)/√n_in
        np.testing.assert_allclose(got[0], one, rtol=1e-15)
        np.testing.assert_allclose(got[1], want, rtol=1e-15)


def test_a_seed_splits_into_the_init_key_and_the_data_key():
    init_key, data_key = member_keys(3)
    expected = jax.random.split(jax.random.key(3))
    assert np.array_equal(jax.random.key_data(init_key), jax.random.key_data(expected[0]))
    assert np.array_equal(jax.random.key_data(data_key), jax.random.key_data(expected[1]))
    for got, want in zip(jax.tree.leaves(initial_params(3, SIZES, "normal", jnp.float32)),
                         jax.tree.leaves(init_params(init_key, SIZES, "normal", jnp.float32))):
        assert np.array_equal(got, want)


def test_members_start_bit_for_bit_where_their_single_runs_start():
    members = member_grid(7, 3, [0.1, 1.0])
    params, data_keys = init_members([m.seed for m in members], SIZES, "xavier", jnp.float32)
    assert params[0]["W"].shape == (6, 2, 5)
    for member in members:
        single = initial_params(member.seed, SIZES, "xavier", jnp.float32)
        for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(single)):
            assert np.array_equal(got[member.index], want)
        assert np.array_equal(jax.random.key_data(data_keys[member.index]),
                              jax.random.key_data(member_keys(member.seed)[1]))


def test_each_member_gets_its_learning_rate_in_the_optimizer_state():
    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=1.0)
    state = optimizer.init({"w": jnp.zeros(3)})
    state = with_hyperparameters(state, {"learning_rate": np.array([0.1, 0.2])})
    np.testing.assert_array_equal(state.hyperparams["learning_rate"], [0.1, 0.2])
    assert state.hyperparams["learning_rate"].dtype == optimizer.init({"w": jnp.zeros(3)}) \
        .hyperparams["learning_rate"].dtype
