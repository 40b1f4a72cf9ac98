"""Test-wide JAX settings: float64 available everywhere (set before any array exists).

Tests that want float32 ask for it explicitly with dtype=jnp.float32.
"""

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_START_METHOD", "thread")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
