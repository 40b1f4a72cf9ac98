"""Repeated in-process `deltaprop.train(cfg)` of the default config, as a notebook, a Hydra
basic-launcher multirun or a test suite does it: the wall time of each run and the programs it
lowered to XLA (counted with jax.monitoring). The first run compiles; the others should not.

    python experiments/bench_repeated_train.py --runs 4
    python experiments/bench_repeated_train.py --runs 4 trainer.epochs=50   # any overrides

Each run gets its own seed and run directory (in a temporary folder); W&B stays offline.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import jax

import deltaprop

LOWERED = "/jax/core/compile/jaxpr_to_mlir_module_duration"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. trainer.epochs=50")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    lowered: list[float] = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **_: lowered.append(seconds) if event == LOWERED else None)
    with tempfile.TemporaryDirectory() as directory:
        for run in range(args.runs):
            cfg = deltaprop.compose(*args.overrides, f"seed={run}", f"run_dir={directory}/{run}",
                                    "print_config=false", "trainer.progress=false")
            lowered.clear()
            start = time.perf_counter()
            deltaprop.train(cfg)
            seconds = time.perf_counter() - start
            print(f"run {run}: {seconds:.2f} s, {len(lowered)} programs lowered "
                  f"({sum(lowered):.2f} s lowering)", flush=True)


if __name__ == "__main__":
    main()
