"""Pure training pieces: the optimizer, one update step, and a whole epoch in one `lax.scan`.

Everything here is a pure function of its inputs (PRNG keys included), so an epoch is one
jitted XLA program and the same state always gives the same result: the basis of exact resume
and of vmapped sweeps.

    θ ← θ − η ∂L/∂θ                    (sgd; momentum and adam transform ∂L/∂θ first)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from deltaprop.backprop import manual_value_and_grad
from deltaprop.losses import loss_fn
from deltaprop.model import Model, parts_of
from deltaprop.network import Params
from deltaprop.settings import OptimizerSettings
from deltaprop.shuffle import permutation

ValueAndGrad = Callable[[Params, jax.Array, jax.Array], tuple[jax.Array, Params]]


class TrainState(NamedTuple):
    params: Params
    opt_state: Any
    key: jax.Array  # drives the data order: one split per epoch
    epoch: jax.Array  # epochs completed


def value_and_grad_fn(
    grad: str = "manual", model: Model | None = None, matmul_dtype: Any | None = None
) -> ValueAndGrad:
    """(params, x, y) -> (loss, ∂L/∂params) by the hand-written pass or by jax.grad, for the
    model's cost and hidden activation (None: BCE and sigmoid)."""
    options = {"matmul_dtype": matmul_dtype, **parts_of(model)}
    if grad == "manual":
        return partial(manual_value_and_grad, **options)
    if grad == "autodiff":
        return jax.value_and_grad(partial(loss_fn, **options))
    raise ValueError(f"trainer.grad={grad!r} must be 'manual' or 'autodiff'")


def unit_schedule(
    schedule: str, total_steps: int, warmup_steps: int = 0, decay_rate: float = 0.1
) -> optax.Schedule:
    """The shape of the learning rate over steps, peaking at 1 (η is applied separately)."""
    decay_steps = max(total_steps - warmup_steps, 1)
    if schedule == "constant":
        main = optax.constant_schedule(1.0)
    elif schedule == "cosine":
        main = optax.cosine_decay_schedule(1.0, decay_steps)
    elif schedule == "exponential":
        main = optax.exponential_decay(1.0, decay_steps, decay_rate)
    else:
        raise ValueError(f"optimizer.schedule={schedule!r} must be constant, cosine or exponential")
    if warmup_steps == 0:
        return main
    warmup = optax.linear_schedule(0.0, 1.0, warmup_steps)
    return optax.join_schedules([warmup, main], [warmup_steps])


def make_optimizer(
    settings: OptimizerSettings, steps_per_epoch: int, epochs: int
) -> optax.GradientTransformation:
    """An optax optimizer from the `optimizer` settings.

    The learning rate, the weight decay and (momentum, adam) the momentum — optimizer.momentum,
    or adam's b1 — are injected hyperparameters (they live in the optimizer state), so a sweep
    can give each member its own, and one compiled program serves every value.
    """
    cfg = settings
    schedule = unit_schedule(
        cfg.schedule,
        steps_per_epoch * epochs,
        steps_per_epoch * cfg.warmup_epochs,
        cfg.decay_rate,
    )

    def build(learning_rate, weight_decay, momentum=None):
        if cfg.name == "adam":  # with weight_decay > 0: AdamW's decoupled decay
            direction = [optax.scale_by_adam(momentum, cfg.b2), optax.add_decayed_weights(weight_decay)]
        elif cfg.name == "momentum":
            direction = [optax.add_decayed_weights(weight_decay), optax.trace(momentum)]
        elif cfg.name == "sgd":  # the textbook's θ ← θ − η ∂L/∂θ (plus L2 decay if asked)
            direction = [optax.add_decayed_weights(weight_decay)]
        else:
            raise ValueError(f"optimizer.name={cfg.name!r} must be sgd, momentum or adam")
        return optax.chain(
            *direction, optax.scale_by_schedule(schedule), optax.scale(-learning_rate)
        )

    injected = {"learning_rate": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.momentum_value is not None:
        injected["momentum"] = cfg.momentum_value
    return optax.inject_hyperparams(build)(**injected)


def init_train_state(params: Params, optimizer: optax.GradientTransformation, key) -> TrainState:
    return TrainState(params, optimizer.init(params), key, jnp.zeros((), jnp.int32))


def batches_per_epoch(n_train: int, batch_size: int, limit: int = 0) -> int:
    """Full minibatches per epoch (a fresh shuffle each epoch, so no example is left out for
    long), at most `limit` of them when it is set (trainer.limit_batches, for a quick look)."""
    steps = max(n_train // min(batch_size, n_train), 1)
    return min(steps, limit) if limit else steps


def make_train_step(optimizer: optax.GradientTransformation, value_and_grad: ValueAndGrad):
    """(params, opt_state, x_batch, y_batch) -> (params, opt_state, loss): one update θ ← θ − η g."""

    def train_step(params, opt_state, x_batch, y_batch):
        loss, grads = value_and_grad(params, x_batch, y_batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step


class Minibatches(NamedTuple):
    """How an epoch draws its minibatches, for one layout of the state.

    order(key, n_train, steps, size) -> (next key, indices (steps, ...)): this epoch's shuffle.
    gather(data, indices) -> the minibatches of `data` (x_train or y_train) for these indices.
    per_epoch: gather the whole epoch's minibatches before the scan (one gather instead of one
      per step: faster for a single run), else each step gathers its own (a packed population's
      epoch of batches would not stay in cache).
    """

    order: Callable[[jax.Array, int, int, int], tuple[jax.Array, jax.Array]]
    gather: Callable[[jax.Array, jax.Array], jax.Array]
    per_epoch: bool = True


def _shuffled_order(key, n_train: int, steps: int, size: int):
    """key, shuffle_key = split(key); the first steps·size of a permutation, (steps, size)."""
    key, shuffle_key = jax.random.split(key)
    order = permutation(shuffle_key, n_train)[: steps * size].reshape(steps, size)
    return key, order


SHUFFLED_ROWS = Minibatches(order=_shuffled_order, gather=lambda data, rows: data[rows])


def make_train_epoch(
    optimizer: optax.GradientTransformation,
    value_and_grad: ValueAndGrad,
    batch_size: int,
    batch_sharding: jax.sharding.Sharding | None = None,
    minibatches: Minibatches = SHUFFLED_ROWS,
    limit_batches: int = 0,
):
    """A pure epoch: shuffle with a key split off the state, then every minibatch in one scan.

    With `batch_sharding` (data parallel, see run/parallel.py) each minibatch is split across
    devices along the batch axis; XLA all-reduces the gradient sums a_{l−1}ᵀ δ_l. `minibatches`
    draws them; packed.py gives every member of a packed population its own shuffle this way.
    `limit_batches` > 0 stops the epoch after that many minibatches.

    Returns:
      train_epoch(state, x_train, y_train) -> (state, per-step losses, the step axis last:
      (steps,), or (M, steps) for a packed population). Wrap it in jax.jit (or vmap it first).
    """
    train_step = make_train_step(optimizer, value_and_grad)

    def train_epoch(state: TrainState, x_train: jax.Array, y_train: jax.Array):
        n_train = x_train.shape[0]
        size = min(batch_size, n_train)
        steps = batches_per_epoch(n_train, batch_size, limit_batches)
        key, order = minibatches.order(state.key, n_train, steps, size)
        gather = lambda rows: (minibatches.gather(x_train, rows), minibatches.gather(y_train, rows))
        batches = gather(order) if minibatches.per_epoch else order  # scanned over, step by step

        def scan_step(carry, batch):
            params, opt_state = carry
            x_batch, y_batch = batch if minibatches.per_epoch else gather(batch)
            if batch_sharding is not None:
                x_batch = jax.lax.with_sharding_constraint(x_batch, batch_sharding)
                y_batch = jax.lax.with_sharding_constraint(y_batch, batch_sharding)
            params, opt_state, loss = train_step(params, opt_state, x_batch, y_batch)
            return (params, opt_state), loss

        (params, opt_state), losses = jax.lax.scan(
            scan_step, (state.params, state.opt_state), batches
        )
        return TrainState(params, opt_state, key, state.epoch + 1), jnp.moveaxis(losses, 0, -1)

    return train_epoch
