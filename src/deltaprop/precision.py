"""Precision: the dtypes a run trains in, and the one float64 scope every check runs under.

    float32   parameters, optimizer state and products in float32
    float64   everything in float64 (needs jax_enable_x64, scoped by `float64_scope`)
    bf16      float32 master weights; only the matrix products take bf16 operands
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from deltaprop.choices import PrecisionName

PRECISIONS = PrecisionName.values()


@dataclass(frozen=True)
class Precision:
    name: str
    dtype: Any  # parameters, optimizer state, loss
    matmul_dtype: Any | None  # bf16: only the matrix products run in lower precision


def precision_of(name: str) -> Precision:
    """The Precision called `name` (one of PRECISIONS)."""
    dtypes = {
        "float32": (jnp.float32, None),
        "float64": (jnp.float64, None),
        "bf16": (jnp.float32, jnp.bfloat16),
    }
    if name not in dtypes:
        raise ValueError(f"precision={name!r} must be one of {', '.join(PRECISIONS)}")
    return Precision(str(name), *dtypes[name])


def float64_scope():
    """A context in which float64 arrays exist (jax_enable_x64), without flipping it globally."""
    if jax.config.jax_enable_x64:
        return contextlib.nullcontext()
    return jax.enable_x64(True)


def precision_scope(name: str):
    """The scope a run of precision `name` trains in: float64_scope for float64, else nothing."""
    return float64_scope() if name == "float64" else contextlib.nullcontext()
