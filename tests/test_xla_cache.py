"""Tests for deltaprop.io.xla_cache: one persistent cache for every program, however small."""

import jax

from deltaprop.io.xla_cache import enable_compilation_cache


def test_the_cache_directory_is_the_argument_else_the_environment(tmp_path, monkeypatch):
    before = {name: getattr(jax.config, name) for name in (
        "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes")}
    try:
        assert enable_compilation_cache(tmp_path / "a") == tmp_path / "a"
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "a")
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
        assert jax.config.jax_persistent_cache_min_entry_size_bytes == 0
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "b"))
        assert enable_compilation_cache() == tmp_path / "b"
    finally:
        for name, value in before.items():
            jax.config.update(name, value)


def test_the_off_switch_leaves_jax_as_it_is(tmp_path, monkeypatch):
    before = jax.config.jax_compilation_cache_dir
    monkeypatch.setenv("DELTAPROP_COMPILATION_CACHE", "0")
    assert enable_compilation_cache(tmp_path / "c") is None
    assert jax.config.jax_compilation_cache_dir == before
