"""Benchmark a vectorized sweep against sequential single runs and a Hydra multirun.

64 members (16 seeds × 4 learning rates) on moons, sizes [2, 16, 16, 1], 100 epochs of 16 steps:

    python experiments/bench_sweep.py                       # everything (several minutes)
    python experiments/bench_sweep.py --repeats 5 --skip-end-to-end
    python experiments/bench_sweep.py --profile             # what one packed epoch spends time on
    python experiments/bench_sweep.py --scaling 1,16,64,256,1024,4096 --out benchmarks/sweep

0. --scaling M,...: throughput against the number of members (see `bench_scaling`): member-steps/s
   and achieved GFLOP/s (counted 6·B·P per member-step) against the float32 matmul ceiling,
   for each layout and for the same members one after another; writes scaling.json,
   scaling.md and scaling.png into --out.

1. Training only, in this process, compile time excluded, repeats interleaved:
     packed     the sweep's packed engine: one program for all 64 members
     vmap       jax.vmap over the project's epoch: one program for all 64 members
     sequential the same 64 members one after another: one jitted 100-epoch program, compiled
                once (with the packed engine's XLA options, which change nothing for it), called
                per member (the fair in-process baseline)
2. End to end, each in a fresh process (startup, compile, evaluation, outputs included), each
   command twice: with an empty and with a warm persistent XLA cache (experiments/train.py
   enables it):
     sweep      python experiments/train.py trainer.num_seeds=16 sweep.lr=[...]
     multirun   python experiments/train.py -m seed=0,...,N-1 for 1 and N jobs, extrapolated
                to 64 jobs (printed as EXTRAPOLATED)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from hydra import compose, initialize_config_dir

from deltaprop import packed
from deltaprop.precision import precision_of
from deltaprop.run.config import read
from deltaprop.run.engines import SWEEP_ENGINES, EngineSpec, make_engine
from deltaprop.run.setup import cast_splits, members_of, model_of, prepare_data
from deltaprop.training import batches_per_epoch

ROOT = Path(__file__).resolve().parents[1]
SEEDS = 16
LEARNING_RATES = [0.1, 0.3, 1.0, 3.0]
EPOCHS = 100
STEPS_PER_EPOCH = 16


def compose_config(overrides: list[str]):
    """The settings of `python experiments/train.py <overrides>`."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return read(compose("config", overrides=overrides))


def common_overrides() -> list[str]:
    """The benchmark's network and schedule; the batch size gives 16 steps per epoch."""
    base = ["dataset=moons", "model.hidden=[16,16]", f"trainer.epochs={EPOCHS}", "logger=none",
            "trainer.progress=false", "optimizer=sgd"]
    n_train = prepare_data(compose_config(base)).x_train.shape[0]
    batch_size = n_train // STEPS_PER_EPOCH
    assert batches_per_epoch(n_train, batch_size) == STEPS_PER_EPOCH
    return [*base, f"trainer.batch_size={batch_size}"]


def all_epochs(train_epoch, compiler_options=None):
    """(state, x, y) -> state after EPOCHS epochs: one program, no host round trips."""

    def run(state, x, y):
        return jax.lax.scan(lambda s, _: (train_epoch(s, x, y)[0], None), state, None, EPOCHS)[0]

    return jax.jit(run, compiler_options=compiler_options)


def timed(function) -> float:
    start = time.perf_counter()
    jax.block_until_ready(function())
    return time.perf_counter() - start


def engine_for(settings, name, n_members, model, epochs=EPOCHS, member_chunk=0):
    """The run's engine for `n_members` members (init it with the members)."""
    return make_engine(EngineSpec.create(
        settings.optimizer, STEPS_PER_EPOCH, epochs, layout=name, model=model,
        precision=precision_of("float32"), grad="manual", batch_size=settings.trainer.batch_size,
        n_members=n_members, member_chunk=member_chunk))


def bench_training(cfg, repeats: int) -> dict[str, list[float]]:
    splits = prepare_data(cfg)
    arrays = cast_splits(splits, jnp.float32)
    x, y = arrays["x_train"], arrays["y_train"]
    model = model_of(cfg, splits)
    members = members_of(cfg)

    # sequential: each member as the single run it equals, minus evaluation and I/O; one
    # program, compiled once (the member's lr lives in its optimizer state)
    single_engine = engine_for(cfg, "single", 1, model)
    single = all_epochs(single_engine.epoch_fn, packed.COMPILER_OPTIONS)
    single_states = [single_engine.init([member]) for member in members]

    programs = {}
    for name in SWEEP_ENGINES:
        engine = engine_for(cfg, name, len(members), model)
        options = packed.COMPILER_OPTIONS if name == "packed" else None
        programs[name] = (all_epochs(engine.epoch_fn, options), engine.init(members), engine)

    def run_sequential():
        return [single(state, x, y) for state in single_states]

    runs = {name: (lambda p=p, s=s: p(s, x, y)) for name, (p, s, _) in programs.items()}
    runs["sequential"] = run_sequential

    compile_times = {name: timed(run) for name, run in runs.items()}  # first call compiles
    print("first call (compile + run): "
          + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in compile_times.items()))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(timed(run))

    reference = jax.tree.map(lambda *leaves: jnp.stack(leaves),
                             *[state.params for state in run_sequential()])
    for name, (program, state, engine) in programs.items():
        got = engine.member_params(program(state, x, y).params)
        difference = max(float(jnp.max(jnp.abs(a - b)))
                         for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(reference)))
        print(f"{name}: max |params − sequential params| after {EPOCHS} epochs (float32) = "
              f"{difference:.1e}")
    return times


def bench_end_to_end(overrides: list[str], multirun_jobs: int) -> dict[str, dict[str, float]]:
    """Wall times of fresh processes: the sweep, and Hydra multiruns of 1 and N jobs.

    experiments/train.py keeps compiled programs in a persistent XLA cache; each command runs
    twice on a cache of its own: "cold" (empty cache) and "warm" (its own programs cached).
    """
    import os

    lrs = ",".join(str(lr) for lr in LEARNING_RATES)
    train = [sys.executable, str(ROOT / "experiments" / "train.py")]
    results: dict[str, dict[str, float]] = {"cold": {}, "warm": {}}
    with tempfile.TemporaryDirectory() as directory:
        commands = {
            "sweep": [*train, *overrides, f"trainer.num_seeds={SEEDS}", f"sweep.lr=[{lrs}]",
                      f"run_dir={directory}/sweep"],
        }
        for jobs in sorted({1, multirun_jobs}):
            seeds = ",".join(str(seed) for seed in range(jobs))
            commands[f"multirun_{jobs}"] = [*train, "-m", *overrides, f"seed={seeds}",
                                            f"hydra.sweep.dir={directory}/multirun_{jobs}"]
        for name, command in commands.items():
            environment = dict(os.environ, JAX_COMPILATION_CACHE_DIR=f"{directory}/xla_{name}")
            for cache in ("cold", "warm"):
                start = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True, cwd=ROOT, env=environment)
                results[cache][name] = time.perf_counter() - start
    return results


def profile_packed_epoch(cfg, epochs: int = 5) -> None:
    """Per-op time of the packed engine's epoch from the JAX profiler's trace."""
    import collections
    import gzip
    import json

    splits = prepare_data(cfg)
    arrays = cast_splits(splits, jnp.float32)
    members = members_of(cfg)
    engine = engine_for(cfg, "packed", len(members), model_of(cfg, splits))
    state = engine.init(members)
    options = {"xla_cpu_enable_xprof_traceme": True, **packed.COMPILER_OPTIONS}
    epoch = jax.jit(engine.epoch_fn, compiler_options=options)
    state = jax.block_until_ready(epoch(state, arrays["x_train"], arrays["y_train"])[0])
    with tempfile.TemporaryDirectory() as directory:
        with jax.profiler.trace(directory, create_perfetto_trace=True):
            for _ in range(epochs):
                state = epoch(state, arrays["x_train"], arrays["y_train"])[0]
            jax.block_until_ready(state)
        trace_file = next(Path(directory).rglob("*.trace.json.gz"))
        with gzip.open(trace_file) as file:
            events = json.load(file)["traceEvents"]
    total: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and not event["name"].startswith(("$", "ThunkExecutor", "Pjit")):
            total[event["name"]] += event.get("dur", 0) / epochs
            calls[event["name"]] += 1 / epochs
    print(f"packed epoch, {len(members)} members, {STEPS_PER_EPOCH} steps: time per epoch by op")
    for name, micros in total.most_common(15):
        print(f"  {micros:9.0f} µs  {calls[name]:5.0f}×  {name}")


SCALING_LAYOUTS = {  # name: (engine, sweep.member_chunk)
    "packed": ("packed", 0),  # in chunks sized for the cache (packed.member_chunk)
    "packed-unchunked": ("packed", 1 << 30),  # every member in one packed array
    "vmap": ("vmap", 0),
}


def bench_scaling(member_counts: list[int], epochs: int, repeats: int) -> dict:
    """Member-steps/s of each layout for each M, and of sequential single runs (one compiled
    program called per member, timed on min(M, 8) members: its rate per member does not depend
    on M), with the float32 matmul ceiling measured in the same process."""
    import benchmarking

    base = compose_config(common_overrides())
    splits = prepare_data(base)
    arrays = cast_splits(splits, jnp.float32)
    x, y = arrays["x_train"], arrays["y_train"]
    model = model_of(base, splits)
    sizes, batch = model.sizes, base.trainer.batch_size
    flops_per_member_step = benchmarking.counted_flops(sizes, batch)
    ceiling = benchmarking.measure(benchmarking.ceiling_runner(2048, jnp.float32), 5, 0.5)
    ceiling_gflops = 2 * 2048**3 / ceiling.median / 1e9
    program = lambda epoch_fn, options=None: jax.jit(lambda s, x, y: jax.lax.scan(
        lambda s, _: (epoch_fn(s, x, y)[0], None), s, None, epochs)[0],
        compiler_options=options)
    rows = []
    for n_members in member_counts:
        members = members_of(compose_config([*common_overrides(),
                                             f"trainer.num_seeds={n_members}"]))
        rates = {}
        for name, (engine_name, chunk) in SCALING_LAYOUTS.items():
            engine = engine_for(base, engine_name, len(members), model, epochs, chunk)
            run = partial(program(engine.epoch_fn, packed.COMPILER_OPTIONS),
                          engine.init(members), x, y)
            rates[name] = n_members * STEPS_PER_EPOCH * epochs / fastest(run, repeats)
        single = engine_for(base, "single", 1, model, epochs)
        one = partial(program(single.epoch_fn, packed.COMPILER_OPTIONS), x=x, y=y)
        states = [single.init([member]) for member in members[:8]]
        run = partial(lambda one, states: [one(state) for state in states], one, states)
        rates["sequential"] = len(states) * STEPS_PER_EPOCH * epochs / fastest(run, repeats)
        row = {"members": n_members, "member_chunk": packed.member_chunk(batch, sizes),
               **{f"{name}/member_steps_per_s": rate for name, rate in rates.items()},
               **{f"{name}/gflops": rate * flops_per_member_step / 1e9
                  for name, rate in rates.items()}}
        rows.append(row)
        print(f"M={n_members:5d}: " + "  ".join(
            f"{name} {rate:,.0f}/s ({rate / rates['sequential']:.1f}×)"
            for name, rate in rates.items()), flush=True)
    return {"sizes": list(sizes), "batch": batch, "steps_per_epoch": STEPS_PER_EPOCH,
            "epochs": epochs, "flops_per_member_step": flops_per_member_step,
            "ceiling_gflops": ceiling_gflops, "device": jax.devices()[0].device_kind,
            "jax": jax.__version__, "rows": rows}


def fastest(run, repeats: int) -> float:
    """The fastest of `repeats` timed calls of run(), after one call that compiles."""
    timed(run)
    return min(timed(run) for _ in range(repeats))


def write_scaling(report: dict, out: Path) -> None:
    """scaling.json, scaling.md (the table of BENCHMARKS.md) and scaling.png."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(report, indent=2))
    names = [*SCALING_LAYOUTS, "sequential"]
    ceiling = report["ceiling_gflops"]
    lines = ["| members | " + " | ".join(f"{name} member-steps/s (× seq, % ceiling)"
                                          for name in names[:-1]) + " | sequential |",
             "|---:|" + "---:|" * len(names)]
    for row in report["rows"]:
        sequential = row["sequential/member_steps_per_s"]
        cells = [f"{row[f'{name}/member_steps_per_s']:,.0f} "
                 f"({row[f'{name}/member_steps_per_s'] / sequential:.1f}×, "
                 f"{100 * row[f'{name}/gflops'] / ceiling:.1f}%)" for name in names[:-1]]
        lines.append(f"| {row['members']} | " + " | ".join(cells) + f" | {sequential:,.0f} |")
    (out / "scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    figure, axis = plt.subplots(figsize=(6, 4))
    members = [row["members"] for row in report["rows"]]
    for name in names:
        axis.plot(members, [row[f"{name}/member_steps_per_s"] for row in report["rows"]],
                  marker="o", label=name)
    axis.set(xscale="log", yscale="log", xlabel="members M", ylabel="member-steps / s",
             title=f"{report['sizes']} b{report['batch']}: throughput vs members")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.savefig(out / "scaling.png", dpi=100, bbox_inches="tight")
    plt.close(figure)


def describe(seconds: list[float]) -> str:
    return (f"median {np.median(seconds):7.3f} s  (min {min(seconds):.3f}, "
            f"max {max(seconds):.3f}, n={len(seconds)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--multirun-jobs", type=int, default=4)
    parser.add_argument("--skip-end-to-end", action="store_true")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--scaling", help="member counts, e.g. 1,16,64,256,1024,4096: only the "
                        "throughput-vs-members table")
    parser.add_argument("--scaling-epochs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sweep")
    args = parser.parse_args()
    if args.scaling:
        counts = [int(count) for count in args.scaling.split(",")]
        write_scaling(bench_scaling(counts, args.scaling_epochs, args.repeats), args.out)
        return

    overrides = common_overrides()
    lrs = ",".join(str(lr) for lr in LEARNING_RATES)
    cfg = compose_config([*overrides, f"trainer.num_seeds={SEEDS}", f"sweep.lr=[{lrs}]"])
    n_members = SEEDS * len(LEARNING_RATES)
    print(f"{n_members} members ({SEEDS} seeds × {len(LEARNING_RATES)} lrs), sizes [2,16,16,1], "
          f"{EPOCHS} epochs × {STEPS_PER_EPOCH} steps, batch {cfg.trainer.batch_size}, float32, "
          f"{jax.device_count()} {jax.devices()[0].platform} device, jax {jax.__version__}")
    if args.profile:
        profile_packed_epoch(cfg)
    if not args.skip_training:
        times = bench_training(cfg, args.repeats)
        print("\ntraining only (in-process, compile excluded):")
        for name, seconds in times.items():
            print(f"  {name:<10} {describe(seconds)}")
        sequential = np.median(times["sequential"])
        for name in SWEEP_ENGINES:
            print(f"  {name} vs sequential: {sequential / np.median(times[name]):.1f}× "
                  f"(median/median; min/min {min(times['sequential']) / min(times[name]):.1f}×)")
    if not args.skip_end_to_end:
        jobs = args.multirun_jobs
        print("\nend to end (fresh processes: startup, compile, evaluation and outputs included):")
        for cache, results in bench_end_to_end(overrides, jobs).items():
            first, many = results["multirun_1"], results[f"multirun_{jobs}"]
            marginal = (many - first) / (jobs - 1) if jobs > 1 else first
            print(f"  {cache} XLA cache:")
            print(f"    sweep, {n_members} members in one process: {results['sweep']:.1f} s")
            print(f"    hydra multirun, measured: 1 job {first:.1f} s, {jobs} jobs {many:.1f} s "
                  f"({many / jobs:.1f} s/job; {marginal:.1f} s per job after the first)")
            for label, total in (
                (f"{jobs}-job time × {n_members}/{jobs}", many / jobs * n_members),
                (f"1 job + {n_members - 1} × the marginal job", first + (n_members - 1) * marginal),
            ):
                print(f"    hydra multirun, {n_members} jobs EXTRAPOLATED from 1 and {jobs} jobs "
                      f"({label}): {total:.0f} s → sweep {total / results['sweep']:.0f}× faster")


if __name__ == "__main__":
    main()
