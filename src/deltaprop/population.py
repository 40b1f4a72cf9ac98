"""A run trains a population of members: one for a single run, a grid for a sweep. This module
says who the members are and where each starts.

The grid is the product of the sweep's axes, seeds innermost:

    sweep.lr × sweep.weight_decay × sweep.momentum × sweep.init_scale × trainer.num_seeds

(an axis left empty holds the run's own value: optimizer.lr, optimizer.weight_decay,
optimizer.momentum or b1, model.init_scale). Member i trains with its seed and hyperparameters,
and starts exactly where a single run with them starts:

    init_key, data_key = split(key(seed))     params from init_key (× init_scale), data order
                                              from data_key

The learning rate, weight decay and momentum are injected hyperparameters
(training.make_optimizer): each member's lives in the optimizer state, one value per member.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from deltaprop.network import Params, init_params

AXES = ("lr", "weight_decay", "momentum", "init_scale")  # a member's hyperparameters


@dataclass(frozen=True)
class Member:
    """One member of a population: what a single run with this seed and these hyperparameters
    does. `momentum` is optimizer.momentum (momentum) or b1 (adam); None for sgd."""

    index: int
    seed: int
    lr: float
    weight_decay: float = 0.0
    momentum: float | None = None
    init_scale: float = 1.0
    swept: tuple[str, ...] = field(default=("lr",), compare=False)  # the axes that vary

    @property
    def name(self) -> str:
        """seed0-lr0.1, plus the other swept axes: seed0-lr0.1-weight_decay0.01."""
        extra = "".join(f"-{axis}{getattr(self, axis):g}" for axis in self.swept if axis != "lr")
        return f"seed{self.seed}-lr{self.lr:g}{extra}"

    def hyperparameters(self) -> dict[str, float | None]:
        return {axis: getattr(self, axis) for axis in AXES}

    def identity(self) -> dict[str, Any]:
        """{"index", "seed", "lr", "weight_decay", "momentum", "init_scale"}: who the member is,
        as a checkpoint records it."""
        return {"index": self.index, "seed": self.seed, **self.hyperparameters()}


def member_grid(
    first_seed: int, num_seeds: int, learning_rates: Sequence[float],
    weight_decays: Sequence[float] = (0.0,), momenta: Sequence[float | None] = (None,),
    init_scales: Sequence[float] = (1.0,),
) -> list[Member]:
    """The product of the axes, seeds innermost: index = point·K + k for seed first_seed + k,
    points in the order lr, weight decay, momentum, init scale (the last varying fastest)."""
    values = (learning_rates, weight_decays, momenta, init_scales)
    swept = tuple(axis for axis, axis_values in zip(AXES, values)
                  if len(axis_values) > 1 or axis == "lr")
    points = itertools.product(*[[None if v is None else float(v) for v in axis_values]
                                 for axis_values in values])
    return [
        Member(j * num_seeds + k, first_seed + k, *point, swept=swept)
        for j, point in enumerate(points)
        for k in range(num_seeds)
    ]


def member_keys(seed: int | jax.Array) -> tuple[jax.Array, jax.Array]:
    """seed → (init key, data key): the parameters come from the first, the data order from the
    second. Every run, sweep member, gradient check and worked example derives its keys here."""
    init_key, data_key = jax.random.split(jax.random.key(seed))
    return init_key, data_key


def initial_params(
    seed: int, sizes: Sequence[int], init: str, dtype: DTypeLike, scale: float = 1.0
) -> Params:
    """The parameters a run with this seed (and model.init_scale) starts from."""
    return init_params(member_keys(seed)[0], sizes, init, dtype, scale)


def init_members(
    seeds: jax.Array | Sequence[int], sizes: Sequence[int], init: str, dtype: DTypeLike,
    scales: jax.Array | Sequence[float] | None = None,
) -> tuple[Params, jax.Array]:
    """The initial params, stacked (M, ...), and data keys (M,) of the members with these seeds
    (and init scales, default 1).

    One program for all members (eagerly, every small random op would compile on its own); the
    seeds and scales are its arguments, so other members reuse it.
    """
    seeds = jnp.asarray(seeds)
    scales = jnp.ones(seeds.shape) if scales is None else jnp.asarray(scales)
    return _init_members(seeds, scales, tuple(sizes), init, dtype)


@partial(jax.jit, static_argnums=(2, 3, 4))
def _init_members(seeds, scales, sizes, init, dtype):
    def one(seed, scale):
        init_key, data_key = member_keys(seed)
        return init_params(init_key, sizes, init, dtype, scale), data_key

    return jax.vmap(one)(seeds, scales)


INJECTED = {"lr": "learning_rate", "weight_decay": "weight_decay", "momentum": "momentum"}


def injected_values(members: Sequence[Member]) -> dict[str, np.ndarray]:
    """The members' injected hyperparameters by optimizer-state name, each (M,): learning_rate,
    weight_decay and (momentum and adam) momentum."""
    return {name: np.asarray([getattr(member, axis) for member in members], np.float64)
            for axis, name in INJECTED.items() if members[0].momentum is not None
            or axis != "momentum"}


def with_hyperparameters(opt_state: Any, values: dict[str, Any]) -> Any:
    """The optimizer state with its injected hyperparameters `values` ({name: value}) set."""
    hyperparams = dict(opt_state.hyperparams)
    for name, value in values.items():
        hyperparams[name] = jnp.asarray(value, hyperparams[name].dtype)
    return opt_state._replace(hyperparams=hyperparams)
