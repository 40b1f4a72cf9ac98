"""A run trains a population of members: one for a single run, K seeds × L learning rates for a
sweep. This module says who the members are and where each starts.

Member i = j·K + k trains with seed s + k and learning rate η_j, and starts exactly where a single
run with that seed and learning rate starts:

    init_key, data_key = split(key(seed))     params from init_key, data order from data_key

The learning rate is an injected hyperparameter (training.make_optimizer), so each member's
lives in the optimizer state, one value per member.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from deltaprop.choices import Choice
from deltaprop.network import Params, init_params


class MemberLayout(Choice):
    """sweep.engine: how a sweep's members are laid out (run/engines.py trains each)."""

    packed = "packed"  # members on the last axis of every array (packed.py)
    vmap = "vmap"  # jax.vmap of the single-run epoch over a leading member axis


@dataclass(frozen=True)
class Member:
    """One member of a population: what a single run with this seed and learning rate does."""

    index: int
    seed: int
    lr: float

    @property
    def name(self) -> str:
        return f"seed{self.seed}-lr{self.lr:g}"


def member_grid(first_seed: int, num_seeds: int, learning_rates: Sequence[float]) -> list[Member]:
    """Members lr-major: index = j·K + k for learning rate j and seed first_seed + k."""
    return [
        Member(j * num_seeds + k, first_seed + k, float(lr))
        for j, lr in enumerate(learning_rates)
        for k in range(num_seeds)
    ]


def member_keys(seed: int | jax.Array) -> tuple[jax.Array, jax.Array]:
    """seed → (init key, data key): the parameters come from the first, the data order from the
    second. Every run, sweep member, gradient check and worked example derives its keys here."""
    init_key, data_key = jax.random.split(jax.random.key(seed))
    return init_key, data_key


def initial_params(seed: int, sizes: Sequence[int], init: str, dtype: DTypeLike) -> Params:
    """The parameters a run with this seed starts from."""
    return init_params(member_keys(seed)[0], sizes, init, dtype)


def init_members(
    seeds: jax.Array | Sequence[int], sizes: Sequence[int], init: str, dtype: DTypeLike
) -> tuple[Params, jax.Array]:
    """The initial params, stacked (M, ...), and data keys (M,) of the members with these seeds.

    One program for all members (eagerly, every small random op would compile on its own); the
    seeds are its argument, so other seeds reuse it.
    """
    return _init_members(jnp.asarray(seeds), tuple(sizes), init, dtype)


@partial(jax.jit, static_argnums=(1, 2, 3))
def _init_members(seeds, sizes, init, dtype):
    def one(seed):
        init_key, data_key = member_keys(seed)
        return init_params(init_key, sizes, init, dtype), data_key

    return jax.vmap(one)(seeds)


def with_learning_rates(opt_state: Any, learning_rates: jax.Array) -> Any:
    """The optimizer state with its injected learning rate replaced by `learning_rates`."""
    hyperparams = dict(opt_state.hyperparams)
    hyperparams["learning_rate"] = jnp.asarray(
        learning_rates, hyperparams["learning_rate"].dtype
    )
    return opt_state._replace(hyperparams=hyperparams)
