"""Timing harness: deltaprop's training step against autodiff and against peer libraries.

Every runner trains the same network, sizes [n_1, ..., n_L] (sigmoid hidden layers, logits out,
mean BCE, plain SGD), on one fixed minibatch of N examples (`step`: one dispatch per step) or on
a whole epoch of minibatches in one `lax.scan` (`epoch`: deltaprop's `make_train_epoch`).

FLOPs of one training step, counted as in the usual 6·N·P rule (P = Σ_l n_{l-1}·n_l weights):

    forward    z_l = a_{l-1} W_l                   2·N·n_{l-1}·n_l
    backward   δ_{l-1} = (δ_l W_lᵀ) ⊙ a(1 − a)     2·N·n_{l-1}·n_l
               ∂L/∂W_l = a_{l-1}ᵀ δ_l              2·N·n_{l-1}·n_l
    total      6·N·Σ_l n_{l-1}·n_l

The rule counts δ_1 = δ_2 W_2ᵀ (the gradient with respect to the input), which no trainer computes,
so the matrix products really executed are 6·N·P − 2·N·n_1·n_2 (`executed_matmul_flops`).

Timings: the first calls (compilation and warm-up) are excluded; each repeat runs enough calls to
last `min_seconds`, then waits for the device (`block_until_ready`, `torch.cuda.synchronize`);
the reported time is the median over repeats. Within a workload every runner, and the matmul
ceiling, is timed round-robin, so a busy neighbour slows them alike. Peers that are not installed
are skipped with a note.

The peer-library runners, and the types they share with this harness (`BenchConfig`, `Runner`,
`Problem`), are in `peers.py` beside this file; this module imports them from there.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from peers import (  # beside this file: the peer runners and the shared types
    _PEER_MODULES,
    LEARNING_RATE,
    PEERS,
    BenchConfig,
    Problem,
    Runner,
    _torch_has_cuda,
    missing_modules,
    peer_runner,
)

from deltaprop.settings import OptimizerSettings
from deltaprop.training import (
    TrainState,
    make_optimizer,
    make_train_epoch,
    make_train_step,
    value_and_grad_fn,
)


@dataclass(frozen=True)
class Workload:
    """A network and a batch size; `epoch_steps` minibatches make one fused epoch."""

    name: str
    sizes: tuple[int, ...]
    batch: int
    epoch_steps: int
    quick_epoch_steps: int
    gpu_only: bool = False


WORKLOADS = {
    workload.name: workload
    for workload in (
        Workload("tiny", (2, 8, 8, 8, 1), 32, epoch_steps=1000, quick_epoch_steps=20),
        Workload("medium", (64, 128, 128, 128, 1), 256, epoch_steps=100, quick_epoch_steps=4),
        Workload("large", (1024,) * 4 + (1,), 1024, epoch_steps=4, quick_epoch_steps=2),
        Workload("xl", (4096,) * 4 + (1,), 4096, epoch_steps=16, quick_epoch_steps=2,
                 gpu_only=True),
    )
}


@dataclass
class Timing:
    """Seconds per training step over the repeats (median and range)."""

    median: float
    minimum: float
    maximum: float
    calls_per_repeat: int
    repeats: int


@dataclass
class Result:
    workload: str
    library: str  # deltaprop-manual | deltaprop-autodiff | a peer | matmul-only
    variant: str  # step (one dispatch per step) | epoch (lax.scan over the epoch)
    precision: str  # float32 | bf16 (bf16 matmuls, float32 master weights)
    steps_per_second: float  # from the median repeat
    seconds_per_step: float
    best_steps_per_second: float  # from the fastest repeat: less sensitive to a busy machine
    spread: float  # (max − min) / median over repeats
    gflops: float  # counted 6·N·P FLOPs per step × steps/s
    percent_of_ceiling: float  # gflops / the matmul ceiling of the same precision (medians)
    best_percent_of_ceiling: float  # the same from the fastest repeats of both
    ratio_to_torch: float | None = None  # steps/s ÷ pytorch-eager steps/s
    final_loss: float | None = None
    xla_flops: float | None = None  # XLA's cost analysis of the compiled step, per step
    xla_bytes: float | None = None


@dataclass
class Report:
    meta: dict[str, Any]
    ceilings: dict[str, dict[str, float]]
    workloads: list[dict[str, Any]]
    results: list[Result] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    goals: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# FLOP counts


def counted_flops(sizes: Sequence[int], batch: int) -> float:
    """6·N·Σ_l n_{l-1}·n_l: forward 2, backward 4 (δ and ∂L/∂W) per weight per example."""
    return 6.0 * batch * sum(n_in * n_out for n_in, n_out in itertools.pairwise(sizes))


def executed_matmul_flops(sizes: Sequence[int], batch: int) -> float:
    """The counted FLOPs minus δ_1 = δ_2 W_2ᵀ (2·N·n_1·n_2), which backprop never forms."""
    return counted_flops(sizes, batch) - 2.0 * batch * sizes[0] * sizes[1]


# ---------------------------------------------------------------------------------------------
# Measurement


def measure_interleaved(
    runners: Sequence[Runner], repeats: int, min_seconds: float, warmup: int = 2,
    pause: float = 0.0,
) -> list[Timing]:
    """Seconds per step of each runner, timed round-robin: repeat r of every runner runs before
    repeat r + 1 of any, so a neighbour's burst of load slows all of them alike.

    Each runner is first warmed up (compilation and `warmup` calls excluded), then calibrated:
    one repeat makes enough calls to last `min_seconds`. `pause` seconds of sleep between runners
    let the previous library's worker threads (OpenMP, Eigen) stop spinning.
    """
    calls = []
    for runner in runners:
        for _ in range(warmup):
            runner.sync(runner.run())
        start = time.perf_counter()
        runner.sync(runner.run())
        single = max(time.perf_counter() - start, 1e-9)
        calls.append(max(1, math.ceil(min_seconds / single)))
    per_step: list[list[float]] = [[] for _ in runners]
    for _ in range(repeats):
        for runner, n_calls, samples in zip(runners, calls, per_step):
            time.sleep(pause)
            start = time.perf_counter()
            out = None
            for _ in range(n_calls):
                out = runner.run()
            runner.sync(out)
            samples.append((time.perf_counter() - start) / (n_calls * runner.steps_per_call))
    return [
        Timing(statistics.median(samples), min(samples), max(samples), n_calls, repeats)
        for samples, n_calls in zip(per_step, calls)
    ]


def measure(runner: Runner, repeats: int, min_seconds: float, warmup: int = 2) -> Timing:
    """Median seconds per step of one runner over `repeats` (see `measure_interleaved`)."""
    return measure_interleaved([runner], repeats, min_seconds, warmup)[0]


def _cost(compiled: Any) -> tuple[float | None, float | None]:
    """(flops, bytes accessed) from XLA's cost analysis, or (None, None) where unavailable."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001  (cost analysis is optional and backend-dependent)
        return None, None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    if not cost:
        return None, None
    return cost.get("flops"), cost.get("bytes accessed")


def ceiling_runner(n: int, dtype: Any) -> Runner:
    """One n×n×n jnp.matmul (2n³ FLOPs) per call; bf16 operands accumulate in float32, as in
    deltaprop's bf16 matmuls."""
    rng = np.random.default_rng(1)
    a = jnp.asarray(rng.standard_normal((n, n), np.float32), dtype)
    b = jnp.asarray(rng.standard_normal((n, n), np.float32), dtype)
    product = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
    return Runner(lambda: product(a, b), jax.block_until_ready, 1, lambda out: 0.0)


# ---------------------------------------------------------------------------------------------
# Data: made once per workload on the host, so that setting up a runner compiles nothing


def make_problem(workload: Workload, epoch_steps: int, seed: int) -> Problem:
    """Random data and `init_params`' Xavier weights W ~ U(±√(6/(n_in+n_out))), b = 0.

    Drawn with numpy: jitting init_params would cost seconds of compilation and changes nothing
    timed here.
    """
    rng = np.random.default_rng(seed)
    params = []
    for n_in, n_out in itertools.pairwise(workload.sizes):
        limit = (6.0 / (n_in + n_out)) ** 0.5
        params.append({"W": rng.uniform(-limit, limit, (n_in, n_out)).astype(np.float32),
                       "b": np.zeros((n_out,), np.float32)})
    n = epoch_steps * workload.batch
    x_train = rng.standard_normal((n, workload.sizes[0]), np.float32)
    y_train = (rng.random((n, workload.sizes[-1])) < 0.5).astype(np.float32)
    return Problem(workload.sizes, workload.batch, epoch_steps, params, x_train, y_train)


# ---------------------------------------------------------------------------------------------
# deltaprop


def deltaprop_runners(
    problem: Problem, grad: str, matmul_dtype: Any, seed: int = 0
) -> dict[str, tuple[Runner, Any]]:
    """{"step": (runner, compiled), "epoch": (runner, compiled)} for one grad and precision.

    Both use deltaprop's own pieces: make_optimizer (sgd), value_and_grad_fn, make_train_step and
    make_train_epoch, jitted with the state donated, as a training run would.
    """
    optimizer = make_optimizer(OptimizerSettings(name="sgd", lr=LEARNING_RATE),
                               problem.epoch_steps, 1)
    value_and_grad = value_and_grad_fn(grad, matmul_dtype=matmul_dtype)
    x_batch, y_batch = jnp.asarray(problem.x), jnp.asarray(problem.y)
    x_train, y_train = jnp.asarray(problem.x_train), jnp.asarray(problem.y_train)
    init_optimizer = jax.jit(optimizer.init)

    step = jax.jit(make_train_step(optimizer, value_and_grad), donate_argnums=(0, 1))
    params = problem.device_params()
    step_state = [params, init_optimizer(params), None]
    step_compiled = step.lower(*step_state[:2], x_batch, y_batch).compile()

    def run_step():
        step_state[:] = step_compiled(step_state[0], step_state[1], x_batch, y_batch)
        return step_state

    epoch = jax.jit(make_train_epoch(optimizer, value_and_grad, problem.batch), donate_argnums=0)
    params = problem.device_params()
    key = jax.random.key(seed)  # the shuffle key; donated with the state
    state = TrainState(params, init_optimizer(params), key, jnp.asarray(np.int32(0)))
    epoch_state = [state, None]
    epoch_compiled = epoch.lower(state, x_train, y_train).compile()

    def run_epoch():
        epoch_state[:] = epoch_compiled(epoch_state[0], x_train, y_train)
        return epoch_state

    return {
        "step": (Runner(run_step, jax.block_until_ready, 1, lambda out: float(out[2])),
                 step_compiled),
        "epoch": (Runner(run_epoch, jax.block_until_ready, problem.epoch_steps,
                         lambda out: float(out[1][-1])), epoch_compiled),
    }


def matmul_only_runner(problem: Problem) -> Runner:
    """Only the matrix products of one backprop step (no σ, loss or update): a speed bound.

    Forward z_l = a_{l-1} W_l, backward δ_{l-1} = δ_l W_lᵀ (l > 2) and ∂L/∂W_l = a_{l-1}ᵀ δ_l,
    with the same shapes and data dependences as `backprop_trace`, in float32.
    """
    params, x = problem.device_params(), jnp.asarray(problem.x)

    @jax.jit
    def products(params, x):
        activations = [x]
        for layer in params:
            activations.append(activations[-1] @ layer["W"])
        delta = activations[-1]
        grads = []
        for i in range(len(params) - 1, -1, -1):
            grads.append(activations[i].T @ delta)
            if i > 0:
                delta = delta @ params[i]["W"].T
        return grads

    return Runner(lambda: products(params, x), jax.block_until_ready, 1, lambda out: 0.0)


# ---------------------------------------------------------------------------------------------
# The whole benchmark


def device_name() -> str:
    """'cpu', or the accelerator's kind in lower-case-with-dashes ('nvidia-h100-80gb-hbm3')."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        return "cpu"
    kind = "".join(c if c.isalnum() else "-" for c in device.device_kind.lower())
    return "-".join(part for part in kind.split("-") if part) or device.platform


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions(peers: Sequence[str]) -> dict[str, str]:
    versions = {"jax": jax.__version__, "optax": optax.__version__}
    for peer in peers:
        for name in _PEER_MODULES[peer]:
            if importlib.util.find_spec(name) is not None:
                versions[name] = getattr(__import__(name), "__version__", "?")
    return versions


def resolve_sizes(cfg: BenchConfig) -> list[Workload]:
    unknown = [name for name in cfg.sizes if name not in WORKLOADS]
    if unknown:
        raise ValueError(f"sizes {unknown} unknown: choose from {', '.join(WORKLOADS)}")
    return [WORKLOADS[name] for name in cfg.sizes]


@dataclass
class Entry:
    """One row of the table before it is timed."""

    library: str
    variant: str
    precision: str
    runner: Runner
    compiled: Any = None  # the compiled XLA program, for its cost analysis


def make_result(
    entry: Entry, timing: Timing, workload: str, flops: float, ceiling: dict[str, float]
) -> Result:
    """GFLOP/s from the counted FLOPs per step, against the ceiling timed in the same rounds
    (`ceiling`: {"median": GFLOP/s, "best": GFLOP/s})."""
    gflops = flops / timing.median / 1e9
    xla_flops, xla_bytes = _cost(entry.compiled) if entry.compiled is not None else (None, None)
    steps = entry.runner.steps_per_call
    return Result(
        workload=workload, library=entry.library, variant=entry.variant,
        precision=entry.precision,
        steps_per_second=1.0 / timing.median, seconds_per_step=timing.median,
        best_steps_per_second=1.0 / timing.minimum,
        spread=(timing.maximum - timing.minimum) / timing.median, gflops=gflops,
        percent_of_ceiling=100.0 * gflops / ceiling["median"],
        best_percent_of_ceiling=100.0 * flops / timing.minimum / 1e9 / ceiling["best"],
        final_loss=entry.runner.loss(entry.runner.run()),
        xla_flops=None if xla_flops is None else xla_flops / steps,
        xla_bytes=None if xla_bytes is None else xla_bytes / steps,
    )


def run_benchmark(cfg: BenchConfig, log: Callable[[str], Any] = print) -> Report:
    """Time every runner of every workload; return the report (no files written).

    Within a workload all runners, the matmul ceilings included, are timed round-robin
    (`measure_interleaved`), so that ratios between rows hold even on a shared machine.
    """
    workloads = resolve_sizes(cfg)
    bad_peers = [peer for peer in cfg.peers if peer not in PEERS]
    if bad_peers:
        raise ValueError(f"peers {bad_peers} unknown: choose from {', '.join(PEERS)}")
    on_cpu = jax.default_backend() == "cpu"
    ceiling_n = cfg.ceiling_size or (512 if cfg.quick else 2048 if on_cpu else 8192)
    repeats = 2 if cfg.quick else cfg.repeats
    min_seconds = 0.01 if cfg.quick else cfg.min_seconds
    pause = 0.0 if cfg.quick else cfg.pause
    report = Report(
        meta={
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "platform": jax.default_backend(),
            "device": device_name(),
            "device_kind": jax.devices()[0].device_kind,
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "load_average_start": list(os.getloadavg()),
            "versions": _versions(cfg.peers),
            "config": dataclasses.asdict(cfg),
            "counted_flops": "6*N*sum(n_in*n_out) per step (forward 2, backward 4)",
        },
        ceilings={},
        workloads=[],
    )
    for peer in cfg.peers:
        missing = missing_modules(peer)
        if missing:
            report.skipped[peer] = (
                f"not installed: {', '.join(missing)} (pip install -e '.[bench]')"
            )
        elif peer == "pytorch-eager" and not on_cpu and not _torch_has_cuda():
            report.skipped[peer] = "this torch has no CUDA: its CPU timings would not compare"
        if peer in report.skipped:
            log(f"skipping {peer}: {report.skipped[peer]}")
    precisions = {"float32": None, "bf16": jnp.bfloat16} if cfg.bf16 else {"float32": None}
    ceilings = {
        precision: ceiling_runner(ceiling_n, dtype or jnp.float32)
        for precision, dtype in precisions.items()
    }
    key = jax.random.key(cfg.seed)

    for workload in workloads:
        if workload.gpu_only and on_cpu:
            log(f"skipping {workload.name}: GPU-only workload")
            continue
        epoch_steps = workload.quick_epoch_steps if cfg.quick else workload.epoch_steps
        problem = make_problem(workload, epoch_steps, cfg.seed)
        entries = [Entry("ceiling", "matmul", p, runner) for p, runner in ceilings.items()]
        for precision, dtype in precisions.items():
            for grad in cfg.grads:
                for variant, (runner, compiled) in deltaprop_runners(
                    problem, grad, dtype, cfg.seed
                ).items():
                    entries.append(Entry(f"deltaprop-{grad}", variant, precision, runner, compiled))
        entries.append(Entry("matmul-only", "step", "float32", matmul_only_runner(problem)))
        for peer in cfg.peers:
            if peer not in report.skipped:
                entries.append(Entry(peer, "step", "float32", peer_runner(peer, problem, key, cfg)))
        log(f"{workload.name}: timing {len(entries)} runners round-robin, {repeats} repeats")
        timings = measure_interleaved(
            [entry.runner for entry in entries], repeats, min_seconds, pause=pause
        )

        ceiling_gflops = {
            entry.precision: {
                "median": 2.0 * ceiling_n**3 / timing.median / 1e9,
                "best": 2.0 * ceiling_n**3 / timing.minimum / 1e9,
            }
            for entry, timing in zip(entries, timings) if entry.library == "ceiling"
        }
        flops = counted_flops(workload.sizes, workload.batch)
        report.workloads.append({
            "name": workload.name, "sizes": list(workload.sizes), "batch": workload.batch,
            "epoch_steps": epoch_steps, "counted_flops_per_step": flops,
            "executed_matmul_flops_per_step": executed_matmul_flops(workload.sizes, workload.batch),
            "ceiling_gflops": ceiling_gflops,
        })
        for precision, gflops in ceiling_gflops.items():
            log(f"{workload.name:>6} ceiling {precision} {ceiling_n}^3: {gflops['median']:.1f} "
                f"GFLOP/s (best {gflops['best']:.1f})")
        for entry, timing in zip(entries, timings):
            if entry.library == "ceiling":
                continue
            result = make_result(
                entry, timing, workload.name, flops, ceiling_gflops[entry.precision]
            )
            report.results.append(result)
            log(f"{workload.name:>6} {entry.library:<20} {entry.variant:<5} {entry.precision:<7} "
                f"{result.steps_per_second:12.1f} steps/s {result.gflops:9.2f} GFLOP/s "
                f"({result.percent_of_ceiling:5.1f}% of ceiling, spread {result.spread:.0%})")

        torch_rate = next((r.steps_per_second for r in report.results
                           if r.workload == workload.name and r.library == "pytorch-eager"), None)
        if torch_rate:
            for result in report.results:
                if result.workload == workload.name:
                    result.ratio_to_torch = result.steps_per_second / torch_rate

    for precision in precisions:
        values = [w["ceiling_gflops"][precision] for w in report.workloads]
        if values:
            report.ceilings[precision] = {
                "n": ceiling_n,
                "gflops": statistics.median(v["median"] for v in values),
                "best_gflops": max(v["best"] for v in values),
            }
    report.meta["load_average_end"] = list(os.getloadavg())
    if "torch" in sys.modules:  # after torch_runner applied cfg.torch_threads
        report.meta["torch_num_threads"] = sys.modules["torch"].get_num_threads()
    report.goals = evaluate_goals(report)
    return report


# ---------------------------------------------------------------------------------------------
# Goals


def _find(report: Report, workload: str, library: str, variant: str, precision: str = "float32"):
    for result in report.results:
        if (result.workload, result.library, result.variant, result.precision) == (
            workload, library, variant, precision
        ):
            return result
    return None


def evaluate_goals(report: Report) -> list[dict[str, Any]]:
    """The goals of issue 7 that this run can judge, each from the medians (`measured`, `met`)
    and from the fastest repeats (`measured_best`, `met_best`).

    `spread` is the largest (max − min) / median of the rows involved: a measured value within
    that fraction of its target is not distinguishable from it on this run.
    """
    goals = []

    def goal(name, median, best, target, rows, at_least=True):
        passes = (lambda v: v >= target) if at_least else (lambda v: v <= target)
        goals.append({
            "goal": name, "target": target, "comparison": ">=" if at_least else "<=",
            "measured": median, "met": bool(passes(median)),
            "measured_best": best, "met_best": bool(passes(best)),
            "spread": max(row.spread for row in rows),
        })

    def rate_ratio(numerator, denominator):
        """(median, best) of numerator steps/s ÷ denominator steps/s."""
        return (numerator.steps_per_second / denominator.steps_per_second,
                numerator.best_steps_per_second / denominator.best_steps_per_second)

    workloads = [w["name"] for w in report.workloads]
    for name in workloads:
        for precision in report.ceilings:
            for variant in ("step", "epoch"):
                manual = _find(report, name, "deltaprop-manual", variant, precision)
                autodiff = _find(report, name, "deltaprop-autodiff", variant, precision)
                if manual and autodiff:  # manual time / autodiff time = autodiff rate / manual rate
                    goal(f"{name} {precision} {variant}: manual time / autodiff time",
                         *rate_ratio(autodiff, manual), 1.0, [manual, autodiff], at_least=False)
    fused = {name: _find(report, name, "deltaprop-manual", "epoch") for name in workloads}
    if report.meta["platform"] == "cpu":
        torch = _find(report, "tiny", "pytorch-eager", "step")
        if fused.get("tiny") and torch:
            goal("tiny: fused epoch steps/s / pytorch-eager steps/s",
                 *rate_ratio(fused["tiny"], torch), 60.0, [fused["tiny"], torch])
        targets, label = (("medium", 70.0), ("large", 95.0)), "float32"
    else:
        targets, label = (("large", 50.0), ("xl", 80.0)), "float32 (TF32)"
    for name, target in targets:
        row = fused.get(name)
        if row:
            goal(f"{name}: fused epoch % of {label} matmul ceiling", row.percent_of_ceiling,
                 row.best_percent_of_ceiling, target, [row])
    bf16 = _find(report, "xl", "deltaprop-manual", "epoch", "bf16")
    if bf16 and fused.get("xl"):
        goal("xl: bf16 steps/s / float32 steps/s", *rate_ratio(bf16, fused["xl"]), 1.8,
             [bf16, fused["xl"]])
    return goals


# ---------------------------------------------------------------------------------------------
# Output


def format_markdown(report: Report) -> str:
    """The results as Markdown tables (one per workload) plus the goals."""
    lines = [
        f"Device: {report.meta['device_kind']} ({report.meta['cpu_model']}, "
        f"{report.meta['cpu_count']} cores); median ceilings: "
        + ", ".join(f"{p} {c['n']}³ matmul {c['gflops']:.1f} GFLOP/s"
                    for p, c in report.ceilings.items()),
        "",
    ]
    for workload in report.workloads:
        lines += [
            (
                f"**{workload['name']}** sizes {workload['sizes']}, batch {workload['batch']}, "
                f"{workload['counted_flops_per_step'] / 1e6:.3g} MFLOP/step counted, "
                f"fused epoch = {workload['epoch_steps']} steps; ceiling "
                + ", ".join(f"{p} {g['median']:.1f} GFLOP/s (best {g['best']:.1f})"
                            for p, g in workload["ceiling_gflops"].items())
            ),
            "",
            "| library | variant | precision | steps/s | best steps/s | × torch eager | GFLOP/s "
            + "| % of ceiling | best % of ceiling | spread |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in report.results:
            if r.workload != workload["name"]:
                continue
            ratio = "–" if r.ratio_to_torch is None else f"{r.ratio_to_torch:.2f}"
            lines.append(
                f"| {r.library} | {r.variant} | {r.precision} | {r.steps_per_second:,.1f} | "
                f"{r.best_steps_per_second:,.1f} | {ratio} | {r.gflops:.2f} | "
                f"{r.percent_of_ceiling:.1f} | {r.best_percent_of_ceiling:.1f} | "
                f"{r.spread:.0%} |"
            )
        lines.append("")
    if report.goals:
        lines += ["| goal | target | median | met | best | met (best) | spread of the rows |",
                  "|---|---:|---:|---|---:|---|---:|"]
        for g in report.goals:
            lines.append(
                f"| {g['goal']} | {g['comparison']} {g['target']:g} | {g['measured']:.3g} | "
                f"{'yes' if g['met'] else 'no'} | {g['measured_best']:.3g} | "
                f"{'yes' if g['met_best'] else 'no'} | {g['spread']:.0%} |"
            )
    if report.skipped:
        lines += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in report.skipped.items())]
    return "\n".join(lines) + "\n"


def plot_report(report: Report, path: Path) -> None:
    """One horizontal bar chart of steps/s (log scale) per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [w["name"] for w in report.workloads]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(5.5 * max(len(names), 1), 4.5),
                             squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = [r for r in report.results if r.workload == name]
        labels = [f"{r.library} {r.variant}" + (" bf16" if r.precision == "bf16" else "")
                  for r in rows]
        colors = ["tab:blue" if r.library.startswith("deltaprop") else
                  "tab:gray" if r.library == "matmul-only" else "tab:orange" for r in rows]
        ax.barh(range(len(rows)), [r.steps_per_second for r in rows], color=colors)
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("training steps / s")
        ax.set_title(f"{name} ({report.meta['device']})")
        for i, r in enumerate(rows):
            if r.ratio_to_torch is not None:
                ax.text(r.steps_per_second, i, f" {r.ratio_to_torch:.2g}×", va="center",
                        fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    """benchmark.json, benchmark.md and benchmark.png in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"benchmark.{name}" for name in ("json", "md", "png")}
    paths["json"].write_text(json.dumps(report.to_json(), indent=2))
    paths["md"].write_text(format_markdown(report))
    plot_report(report, paths["png"])
    return paths
