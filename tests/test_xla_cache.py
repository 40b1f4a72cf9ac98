"""Tests for deltaprop.io.xla_cache: one persistent cache for every program, however small,
turned on without importing JAX when a command starts."""

import subprocess
import sys

import jax
import pytest
from conftest import cli_env

from deltaprop.io.xla_cache import enable_compilation_cache

SETTINGS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
            "jax_persistent_cache_min_entry_size_bytes")


@pytest.fixture
def jax_settings():
    before = {name: getattr(jax.config, name) for name in SETTINGS}
    yield
    for name, value in before.items():
        jax.config.update(name, value)


def test_with_jax_imported_and_no_cache_the_argument_else_the_environment(tmp_path, monkeypatch,
                                                                         jax_settings):
    jax.config.update("jax_compilation_cache_dir", None)
    assert enable_compilation_cache(tmp_path / "a") == tmp_path / "a"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "a")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    assert jax.config.jax_persistent_cache_min_entry_size_bytes == 0
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "b"))
    assert enable_compilation_cache() == tmp_path / "b"


def test_a_cache_configured_already_is_kept(tmp_path, jax_settings):
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))
    assert enable_compilation_cache(tmp_path / "other") == tmp_path / "mine"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")


def test_the_off_switch_leaves_jax_as_it_is(tmp_path, monkeypatch):
    before = jax.config.jax_compilation_cache_dir
    monkeypatch.setenv("DELTAPROP_COMPILATION_CACHE", "0")
    assert enable_compilation_cache(tmp_path / "c") is None
    assert jax.config.jax_compilation_cache_dir == before


def test_before_jax_is_imported_the_environment_carries_it(tmp_path):
    """A command starting: no JAX import, and JAX, imported later, reads the cache settings."""
    probe = (f"import sys; from deltaprop.io.xla_cache import enable_compilation_cache; "
             f"enable_compilation_cache({str(tmp_path / 'd')!r}); "
             f"print('jax' in sys.modules); import jax; "
             f"print(jax.config.jax_compilation_cache_dir, "
             f"jax.config.jax_persistent_cache_min_entry_size_bytes)")
    env = {k: v for k, v in cli_env().items() if not k.startswith(("JAX_COMP", "JAX_PERS"))}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.split() == ["False", str(tmp_path / "d"), "0"]
