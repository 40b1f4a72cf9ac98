"""The benchmark harness on a tiny workload: FLOP counts, the timing loop, goals and the outputs.

No timing is asserted (CI machines are noisy); peers beyond plain JAX are never needed.
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

# The harness (benchmarking.py, peers.py) lives in experiments/, outside the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import benchmarking
from benchmarking import (
    Report,
    Result,
    Runner,
    counted_flops,
    evaluate_goals,
    executed_matmul_flops,
    measure,
    measure_interleaved,
)

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "benchmark.py"


def test_counted_flops_by_hand():
    # tiny: Σ n_in·n_out = 2·8 + 8·8 + 8·8 + 8·1 = 152; 6 · 32 · 152 = 29184
    assert counted_flops((2, 8, 8, 8, 1), 32) == 29184.0
    # minus δ_1 = δ_2 W_2ᵀ: 2 · 32 · 2 · 8 = 1024
    assert executed_matmul_flops((2, 8, 8, 8, 1), 32) == 28160.0


def test_measure_runs_warmup_calibration_and_repeats():
    calls = []
    runner = Runner(run=lambda: calls.append(1), sync=lambda out: out, steps_per_call=3,
                    loss=lambda out: 0.0)
    timing = measure(runner, repeats=4, min_seconds=0.0, warmup=2)
    assert timing.calls_per_repeat == 1
    assert len(calls) == 2 + 1 + 4 * timing.calls_per_repeat
    assert 0 < timing.minimum <= timing.median <= timing.maximum


def test_measure_interleaved_runs_round_robin():
    order = []
    runners = [
        Runner(run=lambda name=name: order.append(name), sync=lambda out: out, steps_per_call=1,
               loss=lambda out: 0.0)
        for name in "ab"
    ]
    timings = measure_interleaved(runners, repeats=3, min_seconds=0.0, warmup=1)
    assert len(timings) == 2
    # warm-up and calibration of a, then of b; then a, b, a, b, a, b
    assert "".join(order) == "aabb" + "ab" * 3


def test_unknown_size_and_peer_are_rejected():
    with pytest.raises(ValueError, match="huge"):
        benchmarking.run_benchmark(benchmarking.BenchConfig(sizes=["huge"]))
    with pytest.raises(ValueError, match="mxnet"):
        benchmarking.run_benchmark(benchmarking.BenchConfig(sizes=["tiny"], peers=["mxnet"]))


def _result(library, variant, seconds, best_seconds=None, workload="tiny"):
    best_seconds = best_seconds or seconds
    return Result(workload, library, variant, "float32", 1 / seconds, seconds, 1 / best_seconds,
                  0.0, 1.0, 50.0, 60.0)


def test_goals_judge_manual_against_autodiff_and_torch():
    report = Report(
        meta={"platform": "cpu"}, ceilings={"float32": {"n": 64, "gflops": 1.0}},
        workloads=[{"name": "tiny"}],
        results=[
            _result("deltaprop-manual", "step", 2.0, best_seconds=0.5),
            _result("deltaprop-autodiff", "step", 1.0),
            _result("deltaprop-manual", "epoch", 1.0),
            _result("deltaprop-autodiff", "epoch", 2.0),
            _result("pytorch-eager", "step", 80.0),
        ],
    )
    goals = {g["goal"]: g for g in evaluate_goals(report)}
    assert goals["tiny float32 step: manual time / autodiff time"]["measured"] == 2.0
    assert not goals["tiny float32 step: manual time / autodiff time"]["met"]
    # its fastest repeat (0.5 s) beats autodiff's (1 s): met on the best-of-repeats view
    assert goals["tiny float32 step: manual time / autodiff time"]["measured_best"] == 0.5
    assert goals["tiny float32 step: manual time / autodiff time"]["met_best"]
    assert goals["tiny float32 epoch: manual time / autodiff time"]["met"]
    assert goals["tiny: fused epoch steps/s / pytorch-eager steps/s"]["measured"] == 80.0
    assert goals["tiny: fused epoch steps/s / pytorch-eager steps/s"]["met"]


@pytest.fixture(scope="module")
def script_run(tmp_path_factory):
    """experiments/benchmark.py --quick on tiny (manual gradients; autodiff is the same code
    path), with equinox made to look uninstalled."""
    out = tmp_path_factory.mktemp("bench")
    spec = importlib.util.spec_from_file_location("benchmark_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(benchmarking._PEER_MODULES, "equinox", ("no_such_module_for_deltaprop",))
        script.main(["--quick", "--sizes", "tiny", "--peers", "jax-plain,equinox", "--no-bf16",
                     "--grads", "manual", "--ceiling-size", "64", "--out", str(out)])
    return out


def test_script_writes_json_markdown_and_png(script_run):
    data = json.loads((script_run / "benchmark.json").read_text())
    assert set(data) == {"meta", "ceilings", "workloads", "results", "skipped", "goals"}
    assert data["ceilings"]["float32"]["gflops"] > 0
    assert [w["name"] for w in data["workloads"]] == ["tiny"]
    rows = {(r["library"], r["variant"]) for r in data["results"]}
    assert rows == {
        ("deltaprop-manual", "step"), ("deltaprop-manual", "epoch"),
        ("matmul-only", "step"), ("jax-plain", "step"),
    }
    for row in data["results"]:
        assert 0 < row["steps_per_second"] <= row["best_steps_per_second"]
        assert row["gflops"] > 0
    assert "equinox" in data["skipped"] and "no_such_module" in data["skipped"]["equinox"]
    assert (script_run / "benchmark.png").stat().st_size > 0
    assert "| deltaprop-manual | epoch | float32 |" in (script_run / "benchmark.md").read_text()


def test_every_runner_reports_a_plausible_loss(script_run):
    data = json.loads((script_run / "benchmark.json").read_text())
    for row in data["results"]:
        if row["library"] == "matmul-only":
            continue
        # Mean BCE on random labels starts near log 2 ≈ 0.693 and a few SGD steps barely move it:
        # a NaN, an inf or a loss in the hundreds means a runner is broken.
        assert 0.3 < row["final_loss"] < 1.5, row
