"""The pure training pieces: optimizer updates by hand, the epoch scan, schedules, manual = autodiff.

Everything runs in float64 (conftest.py enables x64), so exact quantities agree to ~1e-12.
Inputs and hand computations are NumPy; only the code under test runs in (jitted) JAX, which
keeps the number of XLA compilations, and so the run time, small.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import optax
import pytest
from conftest import draw_problem

from deltaprop.backprop import manual_grad
from deltaprop.errors import ConfigError
from deltaprop.losses import loss_fn
from deltaprop.model import Model
from deltaprop.settings import OptimizerSettings
from deltaprop.training import (
    TrainState,
    batches_per_epoch,
    init_train_state,
    make_optimizer,
    make_train_epoch,
    make_train_step,
    unit_schedule,
    value_and_grad_fn,
)

SIZES = [3, 4, 2, 1]
gradient_of = jax.jit(manual_grad)
loss_of = jax.jit(loss_fn)


def optimizer_config(**overrides) -> OptimizerSettings:
    return OptimizerSettings(**overrides)


def as_numpy(tree):
    return jax.tree.map(np.asarray, tree)


def assert_trees_close(actual, expected, atol=1e-12):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=0, atol=atol)


def run_steps(optimizer, params, x, y, steps: int):
    train_step = jax.jit(make_train_step(optimizer, value_and_grad_fn("manual")))
    opt_state = optimizer.init(params)
    for _ in range(steps):
        params, opt_state, _ = train_step(params, opt_state, x, y)
    return params, opt_state


def assert_sgd_steps(optimizer, eta_per_step, params, x, y):
    """Each step k must be θ ← θ − η_k ∂L/∂θ exactly (η_k the scheduled learning rate)."""
    train_step = jax.jit(make_train_step(optimizer, value_and_grad_fn("manual")))
    opt_state = optimizer.init(params)
    for eta in eta_per_step:
        gradient = as_numpy(gradient_of(params, x, y))
        expected = jax.tree.map(lambda theta, g, eta=eta: theta - eta * g, params, gradient)
        params, opt_state, _ = train_step(params, opt_state, x, y)
        params = as_numpy(params)
        assert_trees_close(params, expected)


# ---------------------------------------------------------------- one update step, by hand


def test_one_sgd_step_is_theta_minus_eta_times_gradient():
    params, x, y = draw_problem(0, SIZES, 24, as_numpy=True)
    learning_rate = 0.3
    optimizer = make_optimizer(optimizer_config(name="sgd", lr=learning_rate), 5, 2)
    new_params, _ = run_steps(optimizer, params, x, y, steps=1)

    gradient = as_numpy(gradient_of(params, x, y))
    expected = jax.tree.map(lambda theta, g: theta - learning_rate * g, params, gradient)
    assert_trees_close(new_params, expected)
    for before, after in zip(jax.tree.leaves(params), jax.tree.leaves(new_params)):
        assert not np.allclose(before, after)  # the step really moved every leaf


def test_one_sgd_step_of_logistic_regression_by_hand():
    """No hidden layer: ∂L/∂W = xᵀ(σ(xW + b) − y)/N, ∂L/∂b = Σ(σ(xW + b) − y)/N."""
    rng = np.random.default_rng(1)
    W, b = rng.normal(size=(3, 1)), np.array([0.25])
    x, y = rng.normal(size=(10, 3)), (rng.uniform(size=(10, 1)) < 0.5).astype(np.float64)
    learning_rate = 0.5
    optimizer = make_optimizer(optimizer_config(name="sgd", lr=learning_rate), 1, 1)
    (new_layer,), _ = run_steps(optimizer, [{"W": W, "b": b}], x, y, steps=1)

    error = 1 / (1 + np.exp(-(x @ W + b))) - y  # σ(z) − y
    np.testing.assert_allclose(new_layer["W"], W - learning_rate * x.T @ error / 10, atol=1e-13)
    np.testing.assert_allclose(new_layer["b"], b - learning_rate * error.sum(0) / 10, atol=1e-13)


def test_sgd_weight_decay_adds_lambda_theta_to_the_gradient():
    """θ ← θ − η(g + λθ), biases included."""
    params, x, y = draw_problem(0, SIZES, 24, as_numpy=True)
    learning_rate, decay = 0.2, 0.05
    optimizer = make_optimizer(
        optimizer_config(name="sgd", lr=learning_rate, weight_decay=decay), 4, 3
    )
    new_params, opt_state = run_steps(optimizer, params, x, y, steps=1)
    gradient = as_numpy(gradient_of(params, x, y))
    expected = jax.tree.map(
        lambda theta, g: theta - learning_rate * (g + decay * theta), params, gradient
    )
    assert_trees_close(new_params, expected)
    without_decay = jax.tree.map(lambda theta, g: theta - learning_rate * g, params, gradient)
    assert not np.allclose(new_params[0]["W"], without_decay[0]["W"])
    assert float(opt_state.hyperparams["weight_decay"]) == decay


def test_learning_rate_and_weight_decay_are_injected_hyperparameters():
    params, _, _ = draw_problem(0, SIZES, 24, as_numpy=True)
    optimizer = make_optimizer(optimizer_config(name="adam", lr=0.03, weight_decay=0.1), 2, 2)
    state = optimizer.init(params)
    assert float(state.hyperparams["learning_rate"]) == 0.03
    assert float(state.hyperparams["weight_decay"]) == 0.1


@pytest.mark.parametrize(
    ("cfg", "reference"),
    [
        ({"name": "momentum", "lr": 0.1, "momentum": 0.8}, optax.sgd(0.1, momentum=0.8)),
        ({"name": "adam", "lr": 0.01, "b1": 0.8, "b2": 0.99}, optax.adam(0.01, b1=0.8, b2=0.99)),
        (
            {"name": "adam", "lr": 0.01, "weight_decay": 0.1},
            optax.adamw(0.01, b1=0.9, b2=0.999, weight_decay=0.1),
        ),
    ],
    ids=["momentum", "adam", "adamw"],
)
def test_momentum_and_adam_match_optax_over_several_steps(cfg, reference):
    params, x, y = draw_problem(0, SIZES, 24, as_numpy=True)
    ours, _ = run_steps(make_optimizer(optimizer_config(**cfg), 10, 10), params, x, y, steps=4)
    theirs, _ = run_steps(reference, params, x, y, steps=4)
    assert_trees_close(ours, theirs)
    first_sgd_step = params[0]["W"] - cfg["lr"] * np.asarray(gradient_of(params, x, y)[0]["W"])
    one_step, _ = run_steps(make_optimizer(optimizer_config(**cfg), 10, 10), params, x, y, 1)
    if cfg["name"] == "momentum":  # the first momentum step is plain sgd; later ones are not
        np.testing.assert_allclose(one_step[0]["W"], first_sgd_step, atol=1e-12)
    else:  # adam's first step is ±η per coordinate (the normalized gradient)
        assert not np.allclose(one_step[0]["W"], first_sgd_step)


def test_unknown_optimizer_and_grad_are_rejected():
    # Choices are Enum fields: settings cannot even hold an unknown optimizer.
    with pytest.raises(ConfigError, match=r"name='rmsprop' must be one of sgd, momentum, adam"):
        optimizer_config(name="rmsprop")
    with pytest.raises(ValueError, match="trainer.grad='numeric'"):
        value_and_grad_fn("numeric")
    with pytest.raises(ValueError, match="optimizer.schedule='step'"):
        unit_schedule("step", 10)


# ---------------------------------------------------------------- schedules


@pytest.mark.parametrize(
    ("schedule", "end_value"), [("constant", 1.0), ("cosine", 0.0), ("exponential", 0.1)]
)
def test_schedule_values_at_start_and_end(schedule, end_value):
    shape = unit_schedule(schedule, total_steps=100, decay_rate=0.1)
    assert float(shape(0)) == pytest.approx(1.0, abs=1e-12)
    assert float(shape(100)) == pytest.approx(end_value, abs=1e-12)
    if schedule == "cosine":
        assert float(shape(50)) == pytest.approx(0.5, abs=1e-12)
    if schedule == "exponential":
        assert float(shape(50)) == pytest.approx(0.1**0.5, abs=1e-12)


@pytest.mark.parametrize(
    ("schedule", "end_value"), [("constant", 1.0), ("cosine", 0.0), ("exponential", 0.1)]
)
def test_warmup_rises_linearly_then_follows_the_schedule(schedule, end_value):
    shape = unit_schedule(schedule, total_steps=100, warmup_steps=20, decay_rate=0.1)
    assert float(shape(0)) == pytest.approx(0.0, abs=1e-12)
    assert float(shape(10)) == pytest.approx(0.5, abs=1e-12)
    assert float(shape(20)) == pytest.approx(1.0, abs=1e-12)
    assert float(shape(100)) == pytest.approx(end_value, abs=1e-12)


def test_optimizer_applies_the_schedule_per_step():
    """Cosine over 2 epochs × 2 steps: step k uses η·(1 + cos(πk/4))/2."""
    params, x, y = draw_problem(0, SIZES, 24, as_numpy=True)
    optimizer = make_optimizer(optimizer_config(name="sgd", lr=0.4, schedule="cosine"), 2, 2)
    etas = [0.4 * (1 + np.cos(np.pi * step / 4)) / 2 for step in range(4)]
    assert_sgd_steps(optimizer, etas, params, x, y)


def test_optimizer_warmup_is_counted_in_epochs():
    """warmup_epochs=1 with 2 steps per epoch: η·(0, ½, 1, 1) over the first four steps."""
    params, x, y = draw_problem(0, SIZES, 24, as_numpy=True)
    optimizer = make_optimizer(optimizer_config(name="sgd", lr=0.4, warmup_epochs=1), 2, 3)
    assert_sgd_steps(optimizer, [0.0, 0.2, 0.4, 0.4], params, x, y)


# ---------------------------------------------------------------- the epoch scan


@pytest.mark.parametrize(
    ("n_train", "batch_size", "steps"), [(10, 3, 3), (10, 32, 1), (64, 32, 2), (64, 1, 64)]
)
def test_batches_per_epoch(n_train, batch_size, steps):
    assert batches_per_epoch(n_train, batch_size) == steps


def identity_sgd():
    """sgd with η = 1 and a constant schedule: params += −gradient, exactly."""
    return make_optimizer(optimizer_config(name="sgd", lr=1.0), 1, 1)


@functools.cache
def probe_epoch(n_train: int, batch_size: int):
    """An epoch whose "gradient" counts visits: x_train holds each example's index.

    params["visits"][i] ends up as how often example i was in a minibatch; the per-step "loss"
    is the index of the batch's first example (the whole order when batch_size = 1).
    """

    def count_visits(params, x_batch, y_batch):
        indices = x_batch[:, 0].astype(np.int32)
        visits = jax.nn.one_hot(indices, n_train, dtype=np.float64).sum(0)
        return x_batch[0, 0], {"visits": -visits}

    train_epoch = jax.jit(make_train_epoch(identity_sgd(), count_visits, batch_size))
    x_train = np.arange(n_train, dtype=np.float64)[:, None]
    y_train = np.zeros((n_train, 1))
    return train_epoch, x_train, y_train


def probe_state(n_train: int, seed: int) -> TrainState:
    return init_train_state({"visits": np.zeros(n_train)}, identity_sgd(), jax.random.key(seed))


@pytest.mark.parametrize(("n_train", "batch_size"), [(10, 3), (12, 4), (7, 32)])
def test_epoch_runs_batches_per_epoch_steps_over_a_permutation(n_train, batch_size):
    train_epoch, x_train, y_train = probe_epoch(n_train, batch_size)
    state, losses = train_epoch(probe_state(n_train, 3), x_train, y_train)
    steps = batches_per_epoch(n_train, batch_size)
    size = min(batch_size, n_train)
    assert losses.shape == (steps,)
    visits = np.asarray(state.params["visits"])
    assert set(np.unique(visits)) <= {0.0, 1.0}  # no example twice in one epoch
    assert visits.sum() == steps * size  # full batches only
    assert int(state.epoch) == 1


def epoch_order(state: TrainState, n_train: int = 16):
    """The order in which one epoch visits the examples (batch_size = 1), and the next state."""
    train_epoch, x_train, y_train = probe_epoch(n_train, 1)
    next_state, losses = train_epoch(state, x_train, y_train)
    return np.asarray(losses).astype(int), next_state


def test_each_epoch_draws_a_fresh_shuffle_from_the_state_key():
    start = probe_state(16, seed=7)
    first, after_first = epoch_order(start)
    second, _ = epoch_order(after_first)
    assert sorted(first) == list(range(16))
    assert sorted(second) == list(range(16))
    assert not np.array_equal(first, np.arange(16))  # shuffled at all
    assert not np.array_equal(first, second)  # consecutive epochs differ
    again, _ = epoch_order(start)
    np.testing.assert_array_equal(first, again)  # same key, same order
    assert not np.array_equal(first, epoch_order(probe_state(16, seed=8))[0])


# ---------------------------------------------------------------- manual = autodiff


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_manual_and_autodiff_trajectories_agree_over_five_epochs(name):
    params, x, y = draw_problem(0, SIZES, 40, as_numpy=True)
    lr = {"sgd": 2.0, "adam": 0.05}[name]
    optimizer = make_optimizer(optimizer_config(name=name, lr=lr), 5, 5)
    finals = {}
    for grad in ("manual", "autodiff"):
        train_epoch = jax.jit(make_train_epoch(optimizer, value_and_grad_fn(grad), 8))
        state = init_train_state(params, optimizer, jax.random.key(0))
        for _ in range(5):
            state, losses = train_epoch(state, x, y)
        assert losses.shape == (5,)
        assert int(state.epoch) == 5
        finals[grad] = state.params
    assert_trees_close(finals["manual"], finals["autodiff"], atol=1e-10)
    assert float(loss_of(finals["manual"], x, y)) < float(loss_of(params, x, y))  # it trained


@pytest.mark.parametrize(("loss", "activation"), [("mse", "sigmoid"), ("mse", "tanh")])
def test_manual_and_autodiff_trajectories_agree_for_a_cost_and_activation(loss, activation):
    params, x, y = draw_problem(1, SIZES, 40, as_numpy=True)
    optimizer = make_optimizer(optimizer_config(name="sgd", lr=2.0), 5, 3)
    finals = {}
    for grad in ("manual", "autodiff"):
        value_and_grad = value_and_grad_fn(grad, Model.named(SIZES, loss, activation))
        train_epoch = jax.jit(make_train_epoch(optimizer, value_and_grad, 8))
        state = init_train_state(params, optimizer, jax.random.key(0))
        for _ in range(3):
            state, _ = train_epoch(state, x, y)
        finals[grad] = state.params
    assert_trees_close(finals["manual"], finals["autodiff"], atol=1e-10)
    before = loss_fn(params, x, y, loss=loss, activation=activation)
    assert float(loss_fn(finals["manual"], x, y, loss=loss, activation=activation)) < float(before)
