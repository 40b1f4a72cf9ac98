"""A persistent cache of compiled XLA programs, shared by every run on this machine.

One training run compiles a few dozen small programs (the epoch, evaluation, gradcheck, ...);
on a 2-core CPU each takes 0.3–0.9 s to compile, about half of the default run's time. With the
cache a repeated or swept configuration loads them from disk instead (measured: the default run
took 7.5–8.0 s of CPU without it, 5.3–5.4 s with it; docs/training.md). Within one process, programs are compiled once per shape
anyway (run/engines.py); the cache carries them across processes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_DIRECTORY = Path("~/.cache/deltaprop/xla").expanduser()
OFF_SWITCH = "DELTAPROP_COMPILATION_CACHE"  # =0: the commands leave JAX's cache as it is


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> Path | None:
    """Turn JAX's persistent compilation cache on, for every program however small, unless it
    is on already (a cache directory configured) or $DELTAPROP_COMPILATION_CACHE is 0, false or
    off; returns the directory in use, or None.

    The directory is, in order: the argument, $JAX_COMPILATION_CACHE_DIR, ~/.cache/deltaprop/xla.
    Entries are keyed by the program and the compiler version, so a stale entry is never used.
    Before JAX is imported (a command starting) this sets JAX's environment variables, so the
    command's --help and tab completion never import JAX.
    """
    if os.environ.get(OFF_SWITCH, "1").strip().lower() in ("0", "false", "off", "no"):
        return None
    directory = Path(
        directory or os.environ.get("JAX_COMPILATION_CACHE_DIR") or DEFAULT_DIRECTORY
    ).expanduser()
    settings = {"jax_compilation_cache_dir": str(directory),
                "jax_persistent_cache_min_compile_time_secs": 0.0,
                "jax_persistent_cache_min_entry_size_bytes": 0}
    if "jax" not in sys.modules:
        for name, value in settings.items():
            os.environ.setdefault(name.upper(), str(value))
        return directory
    import jax

    if jax.config.jax_compilation_cache_dir:  # configured already (a test suite, a notebook)
        return Path(jax.config.jax_compilation_cache_dir)
    for name, value in settings.items():
        jax.config.update(name, value)
    return directory
