"""Engines: how a population's state is laid out and trained, behind one interface.

    single   one member in plain arrays: training.make_train_epoch as it is (a single run)
    vmap     jax.vmap of that epoch over a leading member axis: the reference for sweeps
    packed   members on the last axis of every array (packed.py): the fast layout on a CPU

Every engine gives the loop (loop.py) the same functions, all pure and jitted:

    init(members)               every member's starting state (population.init_members)
    epoch(state, x, y)          (state, mean step loss of the epoch (M,), finite (M,))
    evaluate(params, arrays)    diagnostics.progress_metrics of every member, leaves (M, ...)
    keep(mask, new, old)        the state of `new` for members where mask (M,), of `old` elsewhere
    member_params(params)       params with the member axis first (host arrays stay on the host)
    place_state, place_data     on the devices (data parallel: replicated; members sharded)

`finite` is the NaN guard's per-member check (nan_guard.finite_members) of the step losses and
parameters, fused into the epoch: one host sync of 2·M numbers per epoch.

Compiled once per shape: `make_engine` is cached on its `EngineSpec`, which holds only what
changes a program (layout, model, precision, optimizer structure, batch, member count); the
members' seeds and hyperparameters (lr, weight decay, momentum, init scale) are arguments or
state. A second run of the same shapes in a process (a notebook, a multirun, the tests) reuses
every compiled program.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from deltaprop import packed
from deltaprop.choices import MemberLayout, Schedule
from deltaprop.diagnostics import progress_metrics
from deltaprop.model import Model
from deltaprop.nan_guard import finite_members
from deltaprop.network import init_params
from deltaprop.population import (
    Member,
    init_members,
    injected_values,
    member_keys,
    with_hyperparameters,
)
from deltaprop.precision import Precision
from deltaprop.run import parallel
from deltaprop.settings import OptimizerSettings
from deltaprop.training import (
    TrainState,
    init_train_state,
    make_optimizer,
    make_train_epoch,
    value_and_grad_fn,
)

SWEEP_ENGINES = MemberLayout.values()  # sweep.engine; a single run uses "single"


@dataclass(frozen=True)
class EngineSpec:
    """What the compiled programs depend on, and nothing else: the key of make_engine's cache."""

    layout: str  # single | vmap | packed
    model: Model
    precision: Precision
    optimizer: OptimizerSettings  # its structure; lr, weight decay, momentum live in the state
    steps_per_epoch: int  # with `epochs`, what a schedule spans (0, 0 for a constant one)
    epochs: int
    grad: str  # manual | autodiff
    batch_size: int
    limit_batches: int = 0  # trainer.limit_batches
    n_members: int = 1
    member_chunk: int = 0  # sweep.member_chunk: packed members per chunk; 0: packed.member_chunk
    data_parallel: bool = False  # every batch split over the devices
    shard_members: bool = False  # sweep.shard_members: members split over the devices

    @classmethod
    def create(cls, optimizer: OptimizerSettings, steps_per_epoch: int, epochs: int,
               **fields: Any) -> EngineSpec:
        """A spec whose optimizer values that live in the state (and, for a constant schedule,
        the run's length) are normalized away, so that runs differing only there share it."""
        # lr, weight decay and the momentum (momentum's, or adam's b1) are state; unused else
        structure = dataclasses.replace(optimizer, lr=1.0, weight_decay=0.0, momentum=0.0, b1=0.0)
        if optimizer.schedule == Schedule.constant and not optimizer.warmup_epochs:
            steps_per_epoch = epochs = 0
        return cls(optimizer=structure, steps_per_epoch=steps_per_epoch, epochs=epochs,
                   **fields)


@dataclass(frozen=True)
class Engine:
    init: Callable[[Sequence[Member]], TrainState]
    epoch: Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, jax.Array, jax.Array]]
    evaluate: Callable[[Any, dict[str, jax.Array]], dict[str, Any]]
    keep: Callable[[jax.Array, TrainState, TrainState], TrainState]
    member_params: Callable[[Any], Any]
    epoch_fn: Callable  # the pure epoch, unjitted: trainer.debug_nans re-runs it op by op
    member_axis_of: Callable[[Any], int | None]  # each state leaf's member axis (None: shared)
    place_state: Callable[[TrainState], TrainState] = lambda state: state
    place_data: Callable[[Any], Any] = lambda arrays: arrays


@lru_cache(maxsize=32)
def make_engine(spec: EngineSpec) -> Engine:
    """The engine of `spec.layout` ("single", or one of SWEEP_ENGINES); cached on `spec`."""
    builders = {"single": _single, "vmap": _vmap, "packed": _packed}
    if spec.layout not in builders:
        raise ValueError(f"engine {spec.layout!r} must be one of single, "
                         f"{', '.join(SWEEP_ENGINES)}")
    if spec.layout == "single" and spec.n_members != 1:
        raise ValueError(f"the single engine trains one member, not {spec.n_members}")
    return _placed(builders[spec.layout](spec), spec)


def _optimizer(spec: EngineSpec):
    return make_optimizer(spec.optimizer, max(spec.steps_per_epoch, 1), max(spec.epochs, 1))


def _batch_sharding(spec: EngineSpec):
    return parallel.batch_sharding(parallel.data_mesh()) if spec.data_parallel else None


def _placed(engine: Engine, spec: EngineSpec) -> Engine:
    """The engine with its placement: replicated on every device (data parallel), or each
    device holding its block of members (sweep.shard_members)."""
    if spec.shard_members:
        mesh = parallel.member_mesh()
        return dataclasses.replace(engine, place_state=lambda state: parallel.shard_members(
            state, mesh, engine.member_axis_of))
    if spec.data_parallel:
        mesh = parallel.data_mesh()
        place = partial(parallel.replicate, mesh=mesh)
        return dataclasses.replace(engine, place_state=place, place_data=place)
    return engine


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
    progress = jax.vmap(partial(progress_metrics, model=spec.model), in_axes=(0, None))
    return jax.jit(lambda params, arrays: progress(to_member_first(params), arrays))


def _single(spec: EngineSpec) -> Engine:
    optimizer, dtype = _optimizer(spec), spec.precision.dtype
    value_and_grad = value_and_grad_fn(spec.grad, spec.model, spec.precision.matmul_dtype)
    epoch_fn = make_train_epoch(optimizer, value_and_grad, spec.batch_size, _batch_sharding(spec),
                                limit_batches=spec.limit_batches)

    @jax.jit  # seed and hyperparameters are arguments: one program for every run of this shape
    def build(seed, init_scale, injected):
        init_key, data_key = member_keys(seed)
        params = init_params(init_key, spec.model.sizes, spec.model.init, dtype, init_scale)
        state = init_train_state(params, optimizer, data_key)
        return state._replace(opt_state=with_hyperparameters(state.opt_state, injected))

    def init(members: Sequence[Member]) -> TrainState:
        (member,) = members
        injected = {name: values[0] for name, values in injected_values(members).items()}
        return build(member.seed, member.init_scale, injected)

    no_member_axis = lambda leaf: None
    add_axis = lambda params: jax.tree.map(lambda leaf: leaf[None], params)
    return Engine(
        init, jax.jit(_with_finite(epoch_fn, no_member_axis, True)),
        _evaluation(add_axis, spec), _keep(no_member_axis), add_axis, epoch_fn, no_member_axis,
    )


def _stacked_state(spec: EngineSpec, layout: Callable[[Any], Any], vmapped: bool) -> Callable:
    """init(members) of a sweep engine: members stacked, then put in the engine's layout."""
    optimizer = _optimizer(spec)

    @jax.jit  # seeds and hyperparameters are arguments: one program for every member set
    def build(seeds, init_scales, injected):
        params, data_keys = init_members(seeds, spec.model.sizes, spec.model.init,
                                         spec.precision.dtype, init_scales)
        if vmapped:
            state = jax.vmap(lambda p, k: init_train_state(p, optimizer, k))(params, data_keys)
        else:
            state = init_train_state(layout(params), optimizer, data_keys)
        return state._replace(opt_state=with_hyperparameters(state.opt_state, injected))

    def init(members: Sequence[Member]) -> TrainState:
        seeds = np.asarray([member.seed for member in members])
        init_scales = np.asarray([member.init_scale for member in members])
        return build(seeds, init_scales, injected_values(members))

    return init


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
    devices = len(jax.devices()) if spec.shard_members else 1
    return spec.n_members // devices


def _member_mesh(spec: EngineSpec):
    return parallel.member_mesh() if spec.shard_members else None


def _vmap(spec: EngineSpec) -> Engine:
    value_and_grad = value_and_grad_fn(spec.grad, spec.model, spec.precision.matmul_dtype)
    epoch_fn = jax.vmap(
        make_train_epoch(_optimizer(spec), value_and_grad, spec.batch_size, _batch_sharding(spec),
                         limit_batches=spec.limit_batches),
        in_axes=(0, None, None),
    )
    first_axis = lambda leaf: 0
    epoch_fn = _over_devices(epoch_fn, _member_mesh(spec), first_axis)
    return Engine(
        _stacked_state(spec, lambda params: params, vmapped=True),
        jax.jit(_with_finite(epoch_fn, first_axis)), _evaluation(lambda params: params, spec),
        _keep(first_axis), lambda params: params, epoch_fn, first_axis,
    )


def _packed(spec: EngineSpec) -> Engine:
    products = packed.packed_products(spec.precision.matmul_dtype,
                                      sharded_batch=spec.data_parallel)
    value_and_grad = packed.packed_value_and_grad_fn(spec.grad, products, spec.model)
    epoch_fn = make_train_epoch(_optimizer(spec), value_and_grad, spec.batch_size,
                                _batch_sharding(spec), packed.MEMBER_MINIBATCHES,
                                spec.limit_batches)
    chunk = spec.member_chunk or packed.member_chunk(spec.batch_size, spec.model.sizes)
    epoch_fn = packed.in_member_chunks(epoch_fn, _local_members(spec), chunk)
    epoch_fn = _over_devices(epoch_fn, _member_mesh(spec), packed.member_axis_of)
    epoch = jax.jit(
        _with_finite(epoch_fn, packed.member_axis_of), compiler_options=packed.COMPILER_OPTIONS
    )
    return Engine(
        _stacked_state(spec, packed.pack, vmapped=False), epoch,
        _evaluation(packed.unpack, spec), _keep(packed.member_axis_of), packed.unpack, epoch_fn,
        packed.member_axis_of,
    )
