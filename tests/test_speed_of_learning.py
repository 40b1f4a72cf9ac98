"""Tests for deltaprop.teaching.speed_of_learning: Nielsen's ‖∂C/∂b^l‖ per hidden layer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import compose_config

from deltaprop.cli import failing_cleanly
from deltaprop.cli.teaching import speed_of_learning, speed_of_learning_rows
from deltaprop.network import forward, init_params
from deltaprop.population import initial_params
from deltaprop.run.config import read
from deltaprop.settings import SpeedOfLearningSettings
from deltaprop.teaching.speed_of_learning import (
    NIELSEN_SPEEDS,
    first_to_last_ratio,
    format_table,
    speed_table,
)

NIELSEN_NETWORKS = list(NIELSEN_SPEEDS)  # [30, 30], [30, 30, 30], [30, 30, 30, 30]


def speed_config(*overrides: str):
    """The speed_of_learning command's config with experiment=nielsen_speed_of_learning and `overrides`."""
    return compose_config("experiment=nielsen_speed_of_learning", *overrides, config_name="speed_of_learning")


def tiny_problem(n=12, n_inputs=5, n_outputs=3, seed=0):
    """x: (n, n_inputs) Gaussian, y: (n, n_outputs) one-hot, float64."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(n, n_inputs)))
    y = jnp.asarray(np.eye(n_outputs)[rng.integers(0, n_outputs, size=n)])
    return x, y


def nielsen_cost(params, x, y):
    """C = (1/N) Σ_x C_x, C_x the cross-entropy summed over the outputs (Nielsen's cost)."""
    per_element = optax.sigmoid_binary_cross_entropy(forward(params, x), y)
    return jnp.mean(jnp.sum(per_element, axis=1))


def test_one_row_per_hidden_layer_per_network():
    x, y = tiny_problem()
    rows = speed_table(x, y, [[4, 4], [4, 4, 4]], seeds=[0, 1])
    assert [(row.hidden, row.layer) for row in rows] == [
        ((4, 4), 2), ((4, 4), 3), ((4, 4, 4), 2), ((4, 4, 4), 3), ((4, 4, 4), 4)
    ]
    assert all(row.epoch == 0 and row.nielsen is None and row.speed > 0 for row in rows)


def test_speeds_are_the_norms_of_nielsens_dC_db_by_autodiff():
    """manual_grad's ‖∂L/∂b_l‖·n_L equals ‖∂C/∂b^l‖ of Nielsen's summed cost, by jax.grad, and
    the mean over seeds and its spread are of those values."""
    x, y = tiny_problem()
    hidden, seeds = (4, 3, 4), [3, 4]
    sizes = [x.shape[1], *hidden, y.shape[1]]
    expected = np.array([
        [np.linalg.norm(layer["b"]) for layer in
         jax.grad(nielsen_cost)(initial_params(seed, sizes, "nielsen", jnp.float64), x, y)[:-1]]
        for seed in seeds
    ])  # (seeds, hidden layers)
    rows = speed_table(x, y, [hidden], seeds)
    np.testing.assert_allclose([row.speed for row in rows], expected.mean(axis=0),
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose([row.spread for row in rows], expected.std(axis=0),
                               rtol=1e-9, atol=1e-15)


def test_nielsen_init_draws_standard_normal_biases_beside_normals_weights():
    sizes = [50, 400, 300]
    nielsen = init_params(jax.random.key(0), sizes, "nielsen", jnp.float64)
    normal = init_params(jax.random.key(0), sizes, "normal", jnp.float64)
    for layer, same_weights in zip(nielsen, normal):
        np.testing.assert_array_equal(layer["W"], same_weights["W"])
        assert np.all(np.asarray(same_weights["b"]) == 0)
    biases = np.asarray(nielsen[0]["b"])
    assert abs(biases.std() - 1) < 0.15 and abs(biases.mean()) < 0.2
    assert not np.array_equal(nielsen[0]["b"][:300], nielsen[1]["b"])


@pytest.fixture(scope="module")
def digits_rows():
    """Nielsen's three networks on 200 digits images, 2 seeds, at initialization."""
    cfg = speed_config("speed_of_learning.n_images=200",
                         "speed_of_learning.seeds=2")
    return speed_of_learning_rows(read(cfg, SpeedOfLearningSettings))


def test_the_first_hidden_layer_learns_slower_than_the_last_more_so_when_deeper(digits_rows):
    """Nielsen's claim, on the measured numbers: in each network every hidden layer learns
    slower than the one after it, and the last/first ratio grows with depth."""
    for hidden in NIELSEN_NETWORKS:
        speeds = [row.speed for row in digits_rows if row.hidden == hidden]
        assert len(speeds) == len(hidden)
        assert np.all(np.diff(speeds) > 0), speeds
    ratios = [first_to_last_ratio(digits_rows, hidden) for hidden in NIELSEN_NETWORKS]
    assert 1 < ratios[0] < ratios[1] < ratios[2], ratios
    published = [first_to_last_ratio(digits_rows, hidden, published=True)
                 for hidden in NIELSEN_NETWORKS]
    np.testing.assert_allclose(published, [0.31 / 0.07, 0.283 / 0.012, 0.285 / 0.003])


def test_the_table_prints_each_layer_beside_nielsens_value(digits_rows):
    text = format_table(digits_rows)
    assert "n_L·||dL/db_l||" in text
    assert "0.285" in text and "(Nielsen 95.0x)" in text and "(Nielsen 4.4x)" in text
    assert text.count("last/first hidden layer") == 3
    assert len(text.splitlines()) == 3 + 9 + 3


def test_the_command_prints_the_table_and_rejects_a_bad_value(capsys):
    cfg = speed_config("speed_of_learning.n_images=20",
                         "speed_of_learning.seeds=1", "speed_of_learning.hidden=[[3,3]]")
    failing_cleanly(speed_of_learning)(cfg)
    assert "last/first hidden layer" in capsys.readouterr().out
    bad = speed_config("speed_of_learning.seeds=0")
    with pytest.raises(SystemExit) as exit_info:
        failing_cleanly(speed_of_learning)(bad)
    assert exit_info.value.code == 2
    assert "speed_of_learning.seeds=0" in capsys.readouterr().err
