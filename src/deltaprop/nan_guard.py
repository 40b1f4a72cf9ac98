"""The NaN/inf guard: find the members whose loss or parameters stopped being finite, and say
where.

After every epoch one reduction fused into the epoch's program tells, per member, whether its
step losses and parameters are all finite (one host sync per epoch). A diverged member is frozen
at its last finite state and marked with the epoch and the first layer affected; its diverged
state is never recorded or checkpointed. When every member diverged (always, for a single run)
the run stops with TrainingDiverged, naming the last good checkpoint.
trainer.debug_nans=true re-runs the failing epoch op by op to name the operation and source line.
"""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from deltaprop.errors import TrainingDiverged
from deltaprop.network import SIGMOID, Activation, Params, activation_named


def finite_members(
    step_losses: jax.Array, params: Any, member_axis_of: Callable[[Any], int | None]
) -> jax.Array:
    """(M,) booleans: member m's step losses (M, steps) and parameters are all finite.

    `member_axis_of(leaf)` names each leaf's member axis (None: the leaf has none, as in a
    single run, and counts for every member). Jit-compatible.
    """
    finite = jnp.all(jnp.isfinite(step_losses), axis=1)
    for leaf in jax.tree.leaves(params):
        axis = member_axis_of(leaf)
        others = tuple(dim for dim in range(leaf.ndim) if dim != axis)
        finite = finite & jnp.all(jnp.isfinite(leaf), axis=others)
    return finite


@dataclass(frozen=True)
class Divergence:
    """A member whose loss or parameters stopped being finite: frozen at its last finite state."""

    epoch: int
    message: str  # e.g. 'loss became non-finite at epoch 3; first non-finite parameter: layer 2 W'


def first_non_finite_parameter(params: Params) -> str | None:
    """'layer l W' (or b) of the first leaf, in layer order 2..L, holding a NaN or inf."""
    for index, layer in enumerate(params):
        for leaf in ("W", "b"):
            if not np.isfinite(np.asarray(layer[leaf])).all():
                return f"layer {index + 2} {leaf}"
    return None


def first_non_finite_pre_activation(
    params: Params, x: jax.Array, activation: str | Activation = SIGMOID
) -> str | None:
    """'layer l z' of the first layer whose z_l = a_{l−1} W_l + b_l overflows on the batch x,
    the hidden layers applying `activation`'s φ (an unbounded φ, relu, passes a huge z on)."""
    phi = activation_named(activation).phi
    a = np.asarray(x)
    with np.errstate(over="ignore", invalid="ignore"):
        for index, layer in enumerate(params):
            z = a @ np.asarray(layer["W"]) + np.asarray(layer["b"])  # z_l = a_{l−1} W_l + b_l
            if not np.isfinite(z).all():
                return f"layer {index + 2} z"
            a = np.asarray(phi(z))  # a_l = φ(z_l)
    return None


def divergence_message(
    epoch: int,
    step_losses: jax.Array,
    params: Params,
    x: jax.Array | None = None,
    loss_name: str = "loss",
    activation: str | Activation = SIGMOID,
) -> str:
    """e.g. 'loss became non-finite at epoch 3; first non-finite parameter: layer 2 W'.

    With finite parameters (the loss can overflow first: huge weights make z_l = ±inf) and `x`
    given, the first layer whose pre-activation overflows on x is named instead.
    """
    loss_finite = bool(np.isfinite(np.asarray(step_losses)).all())
    what = "parameters" if loss_finite else loss_name
    layer = first_non_finite_parameter(params)
    if layer:
        return f"{what} became non-finite at epoch {epoch}; first non-finite parameter: {layer}"
    where = "all parameters are still finite"
    overflow = None if x is None else first_non_finite_pre_activation(params, x, activation)
    if overflow:
        where += f", but the weights are so large that the first overflow is at {overflow}"
    return f"{what} became non-finite at epoch {epoch}; {where}"


def locate_nan(epoch_fn: Callable, state, x_train, y_train) -> str | None:
    """Re-run one epoch op by op (no jit, scan as a Python loop) to name the NaN's source line.

    Only called under trainer.debug_nans=true, after the jitted epoch reported a NaN.
    """
    try:
        with jax.disable_jit():
            epoch_fn(state, x_train, y_train)
    except FloatingPointError as error:
        frames = [
            frame
            for frame in traceback.extract_tb(error.__traceback__)
            if f"{os.sep}deltaprop{os.sep}" in frame.filename
        ]
        message = str(error).splitlines()[0]
        if frames:
            frame = frames[-1]
            message += f" at {Path(frame.filename).name}:{frame.lineno}: {frame.line}"
        return message
    return None


@contextlib.contextmanager
def debug_nans_scope(enabled: bool):
    """trainer.debug_nans, around the training epoch: a NaN or an inf made by any operation
    stops it (FloatingPointError; JAX re-runs the jitted step op by op and names the primitive).
    Not around the evaluation: parameters that overflowed then are the guard's to report."""
    if not enabled:
        yield
        return
    with jax.debug_nans(True), jax.debug_infs(True):
        yield


def diverged_error(message: str, last_checkpoint: str, debug_nans: bool = False
                   ) -> TrainingDiverged:
    """The error for a run in which every member diverged; `last_checkpoint` says what is left
    to go back to (e.g. 'last good checkpoint: <path> (epoch 3)')."""
    hint = (". Lower optimizer.lr" if debug_nans else
            ". Lower optimizer.lr, or rerun with trainer.debug_nans=true to find the operation")
    return TrainingDiverged(f"{message}; {last_checkpoint}{hint}")
