"""Test-wide JAX settings: float64 available everywhere (set before any array exists).

Tests that want float32 ask for it explicitly with dtype=jnp.float32.
"""

import os
import tempfile

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_START_METHOD", "thread")
# One persistent XLA cache for the session, inherited by the subprocesses the tests start: the
# same small programs are compiled by many tests (see deltaprop/xla_cache.py).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="deltaprop-xla-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax

jax.config.update("jax_enable_x64", True)
