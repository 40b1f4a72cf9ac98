"""Engines: how a population's state is laid out and trained, behind one interface.

    single   one member in plain arrays: training.make_train_epoch as it is (a single run)
    vmap     jax.vmap of that epoch over a leading member axis: the reference for sweeps
    packed   members on the last axis of every array (packed.py): the fast layout on a CPU

Every engine gives the loop (loop.py) the same functions, all pure and jitted:

    init()                      every member's starting state (population.init_members)
    epoch(state, x, y)          (state, mean step loss of the epoch (M,), finite (M,))
    evaluate(params, arrays)    diagnostics.progress_metrics of every member, leaves (M, ...)
    keep(mask, new, old)        the state of `new` for members where mask (M,), of `old` elsewhere
    member_params(params)       params with the member axis first (host arrays stay on the host)

`finite` is the NaN guard's per-member check (nan_guard.finite_members) of the step losses and
parameters, fused into the epoch: one host sync of 2·M numbers per epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from deltaprop import packed
from deltaprop.diagnostics import progress_metrics
from deltaprop.nan_guard import finite_members
from deltaprop.network import init_params
from deltaprop.population import (
    Member,
    MemberLayout,
    init_members,
    injected_values,
    member_keys,
    with_hyperparameters,
)
from deltaprop.precision import Precision
from deltaprop.run import parallel
from deltaprop.training import TrainState, init_train_state, make_train_epoch, value_and_grad_fn

SWEEP_ENGINES = MemberLayout.values()  # sweep.engine; a single run uses "single"


@dataclass(frozen=True)
class EngineSpec:
    """What every engine needs: the members, the network and how to train it."""

    members: Sequence[Member]
    sizes: Sequence[int]
    init: str  # model.init
    precision: Precision
    optimizer: optax.GradientTransformation
    grad: str  # manual | autodiff
    batch_size: int
    batch_sharding: jax.sharding.Sharding | None = None  # data parallel
    limit_batches: int = 0  # trainer.limit_batches
    loss: str = "bce"  # loss: the trained (and reported) cost
    activation: str = "sigmoid"  # model.activation: φ of the hidden layers
    member_chunk: int = 0  # sweep.member_chunk: packed members per chunk; 0: packed.member_chunk
    member_mesh: jax.sharding.Mesh | None = None  # sweep.shard_members: members across devices


@dataclass(frozen=True)
class Engine:
    init: Callable[[], TrainState]
    epoch: Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, jax.Array, jax.Array]]
    evaluate: Callable[[Any, dict[str, jax.Array]], dict[str, Any]]
    keep: Callable[[jax.Array, TrainState, TrainState], TrainState]
    member_params: Callable[[Any], Any]
    epoch_fn: Callable  # the pure epoch, unjitted: trainer.debug_nans re-runs it op by op
    member_axis_of: Callable[[Any], int | None]  # each state leaf's member axis (None: shared)


def make_engine(name: str, spec: EngineSpec) -> Engine:
    """The engine called `name` ("single", or one of SWEEP_ENGINES) for `spec`."""
    builders = {"single": _single, "vmap": _vmap, "packed": _packed}
    name = str(name)
    if name not in builders:
        raise ValueError(f"engine {name!r} must be one of single, {', '.join(SWEEP_ENGINES)}")
    if name == "single" and len(spec.members) != 1:
        raise ValueError(f"the single engine trains one member, not {len(spec.members)}")
    return builders[name](spec)


def _keep(member_axis_of: Callable[[Any], int | None]) -> Callable:
    """keep(mask, new, old): per member, new where mask else old. A leaf without a member axis
    (a shared step count) follows the members that go on."""

    def keep(mask, new, old):
        def select(new_leaf, old_leaf):
            axis = member_axis_of(new_leaf)
            if axis is None:
                return jnp.where(jnp.any(mask), new_leaf, old_leaf)
            shape = [1] * new_leaf.ndim
            shape[axis] = -1
            return jnp.where(mask.reshape(shape), new_leaf, old_leaf)

        return jax.tree.map(select, new, old)

    return jax.jit(keep)


def _with_finite(epoch_fn: Callable, member_axis_of: Callable, add_member_axis: bool = False):
    """epoch(state, x, y) -> (state, epoch losses (M,), finite (M,)), all in the program."""

    def epoch_and_check(state, x_train, y_train):
        state, losses = epoch_fn(state, x_train, y_train)  # step losses (M, steps) or (steps,)
        losses = losses[None] if add_member_axis else losses
        finite = finite_members(losses, state.params, member_axis_of)
        return state, jnp.mean(losses, axis=1), finite

    return epoch_and_check


def _evaluation(to_member_first: Callable, spec: EngineSpec) -> Callable:
    """evaluate(params, arrays) of every member: diagnostics.progress_metrics under jax.vmap."""
    progress = jax.vmap(
        partial(progress_metrics, loss=spec.loss, activation=spec.activation), in_axes=(0, None)
    )
    return jax.jit(lambda params, arrays: progress(to_member_first(params), arrays))


def _single(spec: EngineSpec) -> Engine:
    (member,) = spec.members
    optimizer, dtype = spec.optimizer, spec.precision.dtype
    value_and_grad = value_and_grad_fn(spec.grad, spec.precision.matmul_dtype, spec.loss,
                                       spec.activation)
    epoch_fn = make_train_epoch(optimizer, value_and_grad, spec.batch_size, spec.batch_sharding,
                                limit_batches=spec.limit_batches)

    @jax.jit  # seed and hyperparameters are arguments: one program for every run of this shape
    def build(seed, init_scale, injected):
        init_key, data_key = member_keys(seed)
        params = init_params(init_key, spec.sizes, spec.init, dtype, init_scale)
        state = init_train_state(params, optimizer, data_key)
        return state._replace(opt_state=with_hyperparameters(state.opt_state, injected))

    no_member_axis = lambda leaf: None
    add_axis = lambda params: jax.tree.map(lambda leaf: leaf[None], params)
    return Engine(
        lambda: build(member.seed, member.init_scale,
                      {name: values[0] for name, values in injected_values([member]).items()}),
        jax.jit(_with_finite(epoch_fn, no_member_axis, True)),
        _evaluation(add_axis, spec), _keep(no_member_axis), add_axis, epoch_fn, no_member_axis,
    )


def _stacked_state(spec: EngineSpec, layout: Callable[[Any], Any], vmapped: bool) -> Callable:
    """init() of a sweep engine: members stacked, then put in the engine's layout."""
    seeds = np.asarray([member.seed for member in spec.members])
    init_scales = np.asarray([member.init_scale for member in spec.members])

    @jax.jit  # seeds and hyperparameters are arguments: one program for every member set
    def build(seeds, init_scales, injected):
        params, data_keys = init_members(seeds, spec.sizes, spec.init, spec.precision.dtype,
                                         init_scales)
        if vmapped:
            state = jax.vmap(lambda p, k: init_train_state(p, spec.optimizer, k))(params, data_keys)
        else:
            state = init_train_state(layout(params), spec.optimizer, data_keys)
        return state._replace(opt_state=with_hyperparameters(state.opt_state, injected))

    return lambda: build(seeds, init_scales, injected_values(spec.members))


def _over_devices(epoch_fn: Callable, mesh, member_axis_of: Callable) -> Callable:
    """sweep.shard_members: each device runs `epoch_fn` on its own block of members
    (jax.shard_map); the members are independent, so nothing crosses devices."""
    if mesh is None:
        return epoch_fn

    def epoch(state, x_train, y_train):
        specs = jax.tree.map(lambda leaf: parallel.member_spec(member_axis_of(leaf)), state)
        return jax.shard_map(
            epoch_fn, mesh=mesh, in_specs=(specs, P(), P()),
            out_specs=(specs, P(parallel.MEMBER_AXIS)), check_vma=False,
        )(state, x_train, y_train)

    return epoch


def _local_members(spec: EngineSpec) -> int:
    """The members each device trains: all, or its block under sweep.shard_members."""
    devices = 1 if spec.member_mesh is None else spec.member_mesh.devices.size
    return len(spec.members) // devices


def _vmap(spec: EngineSpec) -> Engine:
    value_and_grad = value_and_grad_fn(spec.grad, spec.precision.matmul_dtype, spec.loss,
                                       spec.activation)
    epoch_fn = jax.vmap(
        make_train_epoch(spec.optimizer, value_and_grad, spec.batch_size, spec.batch_sharding,
                         limit_batches=spec.limit_batches),
        in_axes=(0, None, None),
    )
    first_axis = lambda leaf: 0
    epoch_fn = _over_devices(epoch_fn, spec.member_mesh, first_axis)
    return Engine(
        _stacked_state(spec, lambda params: params, vmapped=True),
        jax.jit(_with_finite(epoch_fn, first_axis)), _evaluation(lambda params: params, spec),
        _keep(first_axis), lambda params: params, epoch_fn, first_axis,
    )


def _packed(spec: EngineSpec) -> Engine:
    products = packed.packed_products(
        spec.precision.matmul_dtype, sharded_batch=spec.batch_sharding is not None
    )
    value_and_grad = packed.packed_value_and_grad_fn(spec.grad, products, spec.loss,
                                                     spec.activation)
    epoch_fn = make_train_epoch(spec.optimizer, value_and_grad, spec.batch_size,
                                spec.batch_sharding, packed.MEMBER_MINIBATCHES,
                                spec.limit_batches)
    chunk = spec.member_chunk or packed.member_chunk(spec.batch_size, spec.sizes)
    epoch_fn = packed.in_member_chunks(epoch_fn, _local_members(spec), chunk)
    epoch_fn = _over_devices(epoch_fn, spec.member_mesh, packed.member_axis_of)
    epoch = jax.jit(
        _with_finite(epoch_fn, packed.member_axis_of), compiler_options=packed.COMPILER_OPTIONS
    )
    return Engine(
        _stacked_state(spec, packed.pack, vmapped=False), epoch,
        _evaluation(packed.unpack, spec), _keep(packed.member_axis_of), packed.unpack, epoch_fn,
        packed.member_axis_of,
    )
