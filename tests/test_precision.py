"""Tests for deltaprop.precision: the dtypes of each precision, and the float64 scope."""

import jax
import jax.numpy as jnp
import pytest

from deltaprop.precision import PRECISIONS, float64_scope, precision_of, precision_scope


def test_each_precision_names_its_dtypes():
    assert [(p.dtype, p.matmul_dtype) for p in map(precision_of, PRECISIONS)] == [
        (jnp.float32, None), (jnp.float64, None), (jnp.float32, jnp.bfloat16)
    ]
    with pytest.raises(ValueError, match="precision='half' must be one of float32, float64, bf16"):
        precision_of("half")


def test_the_float64_scope_is_scoped():
    jax.config.update("jax_enable_x64", False)
    try:
        with float64_scope():
            assert jnp.zeros(1, jnp.float64).dtype == jnp.float64
        assert not jax.config.jax_enable_x64
        with precision_scope("float32"):
            assert not jax.config.jax_enable_x64
        with precision_scope("float64"):
            assert jax.config.jax_enable_x64
    finally:
        jax.config.update("jax_enable_x64", True)  # as conftest.py sets it
