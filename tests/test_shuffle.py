"""Tests for deltaprop.shuffle: a sort-free permutation that is a bijection, as random as a
sort by random keys, and the same for a member of a packed population as for a single run."""

from __future__ import annotations

import itertools
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deltaprop import packed, shuffle
from deltaprop.training import SHUFFLED_ROWS

permutation = jax.jit(shuffle.permutation, static_argnums=1)
member_permutations = jax.jit(jax.vmap(shuffle.permutation, in_axes=(0, None)), static_argnums=1)


@pytest.mark.parametrize("bits", [1, 2, 5, 10, 15])
def test_feistel_rounds_are_a_bijection_undone_by_their_inverse(bits):
    round_keys = jax.random.bits(jax.random.key(bits), (shuffle.ROUNDS,), jnp.uint32)
    domain = jnp.arange(1 << bits, dtype=jnp.uint32)
    image = shuffle._feistel(domain, round_keys, bits)
    assert sorted(np.asarray(image).tolist()) == list(range(1 << bits))
    np.testing.assert_array_equal(shuffle._feistel_inverse(image, round_keys, bits), domain)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 700, 1024, 1025, 32000])
def test_permutation_contains_every_index_once(n):
    order = np.asarray(permutation(jax.random.key(n), n))
    assert order.dtype == np.int32
    np.testing.assert_array_equal(np.sort(order), np.arange(n))


def test_permutation_is_a_pure_function_of_the_key():
    key = jax.random.key(3)
    np.testing.assert_array_equal(permutation(key, 100), permutation(key, 100))
    assert not np.array_equal(permutation(key, 100), permutation(jax.random.key(4), 100))


def test_all_orders_of_three_are_about_equally_likely():
    orders = member_permutations(jax.random.split(jax.random.key(0), 24000), 3)
    counts = Counter(map(tuple, np.asarray(orders).tolist()))
    assert set(counts) == set(itertools.permutations(range(3)))
    # 4000 expected each; the binomial's std is 58, so ±300 fails by chance about 1 in 10^6
    assert all(abs(count - 4000) < 300 for count in counts.values()), counts


def test_every_position_is_about_equally_likely_for_every_element():
    n, draws = 12, 24000
    orders = np.asarray(member_permutations(jax.random.split(jax.random.key(1), draws), n))
    frequency = np.stack([np.bincount(orders[:, j], minlength=n) for j in range(n)]) / draws
    np.testing.assert_allclose(frequency, 1 / n, atol=0.012)  # std 0.0018: 6.5 σ
    # neighbours are not kept together: P(order[0] < order[1]) = 1/2
    assert abs(np.mean(orders[:, 0] < orders[:, 1]) - 0.5) < 0.015


def test_a_packed_member_shuffles_as_its_single_run_does():
    keys = jax.random.split(jax.random.key(5), 4)
    member_orders = jax.jit(lambda keys: packed.MEMBER_MINIBATCHES.order(keys, 50, 3, 16))
    next_keys, orders = member_orders(keys)  # orders (steps, size, M)
    single_order = jax.jit(lambda key: SHUFFLED_ROWS.order(key, 50, 3, 16))
    for m, key in enumerate(keys):
        next_key, expected = single_order(key)
        np.testing.assert_array_equal(orders[..., m], expected)
        np.testing.assert_array_equal(jax.random.key_data(next_keys[m]),
                                      jax.random.key_data(next_key))
