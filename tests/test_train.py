"""train(cfg) end to end, in-process and through experiments/train.py as users run it: single
runs and sweeps, their outputs and W&B runs, and every member equal to its single run.

Subprocess tests run the real command line; W&B stays offline (conftest.py sets WANDB_MODE) except
in the no-network test, which removes WANDB_MODE and points W&B at an unroutable address.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import EXPERIMENTS, cli_env, max_param_difference

from deltaprop.io.files import load_params
from deltaprop.run.tracker import run_group
from deltaprop.run.train import train

TRAIN_SCRIPT = EXPERIMENTS / "train.py"
RUN_FILES = (
    "metrics.jsonl",
    "summary.json",
    "loss_curves.png",
    "layer_norms.png",
    "decision_boundary.png",
    "params.safetensors",
)


# ---------------------------------------------------------------- train(cfg) in-process


@pytest.mark.slow
def test_moons_with_adam_end_to_end(make_cfg, tmp_path):
    """The user's first run: moons, adam, 150 epochs; the run dir holds every promised file."""
    final = train(make_cfg("logger=none", "trainer.progress=false", "optimizer=adam",
                           "optimizer.lr=0.02", "trainer.epochs=150", "trainer.eval_every=50",
                           run_dir=tmp_path, small=False))

    assert final["val/acc"] >= 0.95
    assert final["val/auc"] >= 0.98
    assert final["test/acc"] >= 0.9
    for name in RUN_FILES:
        assert (tmp_path / name).stat().st_size > 0, name
    for name in ("loss_curves.png", "layer_norms.png", "decision_boundary.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "wandb").exists()  # logger=none

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == pytest.approx(final)
    namespaced = {
        "train/loss", "train/acc", "val/loss", "val/acc", "val/auc", "val/best_loss",
        "test/loss", "test/acc", "test/auc",
        "grads/layer_2/delta_norm", "grads/layer_2/grad_W_norm", "grads/layer_2/grad_b_norm",
        "grads/layer_2/saturated", "grads/layer_3/saturated", "grads/layer_4/delta_norm",
    }
    assert namespaced <= set(summary)
    assert "grads/layer_4/saturated" not in summary  # the output layer has no σ' to saturate
    assert all(key == "epoch" or "/" in key for key in summary)

    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [0, 50, 100, 150]  # 0: at initialization
    assert all(namespaced - {"test/loss", "test/acc", "test/auc"} <= set(row) for row in history)
    assert history[-1]["val/acc"] == summary["val/acc"]

    params = load_params(tmp_path / "params.safetensors")
    assert [layer["W"].shape for layer in params] == [(2, 16), (16, 16), (16, 1)]


@pytest.mark.slow
def test_manual_and_autodiff_runs_end_in_the_same_params(make_cfg, tmp_path):
    """trainer.grad=manual vs autodiff, float64, 5 epochs: params.safetensors agree to 1e-10."""
    params = {}
    for grad in ("manual", "autodiff"):
        run_dir = tmp_path / grad
        train(make_cfg(f"trainer.grad={grad}", "trainer.precision=float64", "trainer.epochs=5",
                       "trainer.eval_every=5", "model.hidden=[8,8]", "dataset.n_samples=200",
                       run_dir=run_dir))
        params[grad] = load_params(run_dir / "params.safetensors")
    largest_bias = 0.0
    for manual, autodiff in zip(params["manual"], params["autodiff"], strict=True):
        for leaf in ("W", "b"):
            assert manual[leaf].dtype == np.float64
            np.testing.assert_allclose(manual[leaf], autodiff[leaf], rtol=0, atol=1e-10)
        largest_bias = max(largest_bias, float(np.abs(manual["b"]).max()))
    assert largest_bias > 1e-3  # biases start at 0: training moved them


# ---------------------------------------------------------------- the command line


def test_multirun_gives_each_job_its_own_offline_wandb_run_in_one_group(run_command, tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_command(
        "train",
        "-m",
        "seed=0,1",
        "trainer.epochs=2",
        "trainer.progress=false",
        "dataset.n_samples=200",
        "model.hidden=[4]",
        "logger.log_gradcheck=false",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    runs = sorted(sweep_dir.glob("*/wandb/offline-run-*"))
    assert len(runs) == 2, runs
    assert {run.parent.parent.name for run in runs} == {"0", "1"}  # one per job directory
    run_ids = {run.name.rsplit("-", 1)[1] for run in runs}
    assert len(run_ids) == 2
    for run in runs:
        job = run.parent.parent.name
        record = (run / f"run-{run.name.rsplit('-', 1)[1]}.wandb").read_bytes()
        assert run_group(sweep_dir).encode() in record  # the sweep's folder: the group
        assert f"seed{job}".encode() in record  # each named after its overrides (seed=0, 1)
        assert (run.parent.parent / "summary.json").exists()


@pytest.mark.slow
def test_default_run_needs_no_network(run_cli, tmp_path):
    """The defaults (W&B offline) with WANDB_MODE unset and W&B pointed at a dead address."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
    env["WANDB_BASE_URL"] = "http://127.0.0.1:9"
    run_dir = tmp_path / "run"
    result = run_cli(
        "train.py", "trainer.epochs=5", f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    runs = list(run_dir.glob("wandb/offline-run-*"))
    assert len(runs) == 1
    assert f"run directory: {run_dir.resolve()}" in result.stdout
    assert f"W&B run: {runs[0].resolve()}" in result.stdout
    assert "test/acc" in result.stdout
    for name in RUN_FILES:
        assert (run_dir / name).exists(), name
    # JAX as a user gets it (x64 off; the suite's own process turns it on): float32 throughout
    assert {layer[leaf].dtype for layer in load_params(run_dir / "params.safetensors")
            for leaf in ("W", "b")} == {np.dtype(np.float32)}


# ---------------------------------------------------------------- sweeps


def test_a_grid_of_weight_decay_momentum_and_init_scale_is_one_sweep_of_single_runs(make_cfg,
                                                                                    tmp_path):
    # 2 weight decays × 2 momenta × 2 init scales × 1 seed; member 5 is (0.1, 0.5, 2.0)
    axes = ["sweep.weight_decay=[0.0,0.1]", "sweep.momentum=[0.5,0.8]", "sweep.init_scale=[1.0,2.0]"]
    common = ["optimizer=momentum", "optimizer.lr=0.5", "trainer.precision=float64"]
    metrics = train(make_cfg(*common, *axes, run_dir=tmp_path / "grid"))
    assert metrics["sweep/members"] == 8
    assert {f"sweep/best_{axis}" for axis in ("lr", "weight_decay", "momentum", "init_scale")} \
        <= set(metrics)
    rows = list(csv.DictReader((tmp_path / "grid" / "members.csv").read_text().splitlines()))
    assert list(rows[0])[:6] == ["member", "seed", "lr", "weight_decay", "momentum", "init_scale"]
    assert [(float(r["weight_decay"]), float(r["momentum"]), float(r["init_scale"]))
            for r in rows][5] == (0.1, 0.5, 2.0)
    summary = json.loads((tmp_path / "grid" / "summary.json").read_text())
    assert len(summary["by_point"]) == 8
    assert set(summary["by_axis"]) == {"lr", "weight_decay", "momentum", "init_scale"}
    assert [row["members"] for row in summary["by_axis"]["momentum"]] == [4, 4]

    single = ["optimizer.weight_decay=0.1", "optimizer.momentum=0.5", "model.init_scale=2.0"]
    train(make_cfg(*common, *single, run_dir=tmp_path / "single"))
    assert max_param_difference(tmp_path / "grid" / "members" / "member_5" / "params.safetensors",
                                tmp_path / "single" / "params.safetensors") < 1e-12


def test_sweep_momentum_needs_an_optimizer_with_momentum(make_cfg, tmp_path):
    from deltaprop.errors import ConfigError

    with pytest.raises(ConfigError, match=r"sweep.momentum=\[0.5\] needs an optimizer"):
        train(make_cfg("optimizer=sgd", "sweep.momentum=[0.5]"))
    assert not (tmp_path / "run").exists()  # refused before the run directory was made



@pytest.mark.slow
def test_sweep_writes_every_member_and_logs_each_as_its_own_run(make_cfg, tmp_path,
                                                                recorded_runs):
    cfg = make_cfg("seed=3", "trainer.num_seeds=2", "sweep.lr=[0.5,2.0]", "logger=wandb",
                   "logger.group=g1", "logger.log_gradcheck=true", "logger.plots=true",
                   run_dir=tmp_path)

    metrics = train(cfg)

    assert metrics["sweep/members"] == 4 and metrics["sweep/diverged"] == 0
    rows = list(csv.DictReader((tmp_path / "members.csv").read_text().splitlines()))
    assert [(int(r["seed"]), float(r["lr"]), r["diverged"]) for r in rows] == [
        (3, 0.5, "False"), (4, 0.5, "False"), (3, 2.0, "False"), (4, 2.0, "False")
    ]
    members = json.loads((tmp_path / "members.json").read_text())
    best = [m for m in members if m["lr"] == metrics["sweep/best_lr"]]
    assert len(best) == 2
    for key in ("val/best_loss", "val/acc", "test/acc", "test/auc", "train/epoch_loss"):
        assert metrics[key] == pytest.approx(np.mean([m[key] for m in best]), rel=1e-12)
    assert len({m["val/best_loss"] for m in members}) == 4  # four different runs
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [row["lr"] for row in summary["by_point"]] == [0.5, 2.0]
    assert summary["by_axis"] == {"lr": summary["by_point"]}  # one axis: the same table
    assert summary["val/best_loss"] == metrics["val/best_loss"]
    assert (tmp_path / "sweep_curves.png").stat().st_size > 10_000
    for index in range(4):
        history = (tmp_path / "members" / f"member_{index}" / "metrics.jsonl").read_text()
        assert [json.loads(line)["epoch"] for line in history.splitlines()] == [0, 2, 3]

    member_runs = [run for run in recorded_runs if run.job_type == "train"]
    (summary_run,) = [run for run in recorded_runs if run.job_type == "sweep-summary"]
    assert {run.group for run in recorded_runs} == {"g1"}
    assert [(r.config["seed"], r.config["optimizer"]["lr"], r.config["member"]) for r in
            member_runs] == [(3, 0.5, 0), (4, 0.5, 1), (3, 2.0, 2), (4, 2.0, 3)]
    assert all(run.config["data_seed"] == 3 for run in member_runs)
    assert [step for step, _ in member_runs[2].steps] == [0, 2, 3]  # logged as they train
    assert member_runs[2].summary["val/best_loss"] == members[2]["val/best_loss"]
    # Each member's parameters: the artifact model-<its run id>, `best` when its last
    # evaluation is its best one.
    for member, run in zip(members, member_runs):
        name = f"model-{run.run_id}"
        assert run.artifacts == [name]
        best = member["val/loss"] == member["val/best_loss"]
        assert run.aliases[name] == (["latest", "best"] if best else ["latest"])
    assert all(run.exit_code == 0 for run in recorded_runs)
    assert "plots/sweep_curves" in summary_run.images
    assert len(summary_run.tables["members"][1]) == 4
    assert "gradcheck" in summary_run.tables  # the network's gradient check, once per sweep
    assert summary_run.summary["sweep/members"] == 4


@pytest.mark.slow
def test_wandb_offline_gives_one_run_per_member_and_a_summary_run_in_one_group(make_cfg,
                                                                               tmp_path):
    import wandb

    train(make_cfg("trainer.num_seeds=2", "trainer.epochs=2", "logger=wandb",
                   "logger.mode=offline", "logger.project=deltaprop-test",
                   "experiment_name=sweeptest", run_dir=tmp_path))
    wandb.teardown()  # flush the offline run files

    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 3
    records = [next(run.glob("run-*.wandb")).read_bytes() for run in runs]
    assert all(tmp_path.name.encode() in record for record in records)  # the folder: the group
    assert sum(b"sweep-summary" in record for record in records) == 1
    assert sum(b"seed1-lr1" in record for record in records) == 1  # member 1's run name


@pytest.mark.slow
@pytest.mark.parametrize(
    "engine, grad, optimizer, checked",
    [
        ("packed", "manual", "sgd", [0, 3]),
        ("vmap", "manual", "sgd", [1, 2]),  # (seed 8, lr 0.05) and (seed 7, lr 0.4)
        ("packed", "autodiff", "adam", [0, 3]),
    ],
)
def test_each_member_equals_the_single_run_with_its_seed_and_lr(
    make_cfg, tmp_path, engine, grad, optimizer, checked
):
    """Float64: members' params equal their single runs' to 1e-10. The members share the
    split of the sweep's seed (7); dataset.seed=7 gives a single run that split."""
    base = ["trainer.precision=float64", f"trainer.grad={grad}", f"optimizer={optimizer}",
            "dataset.seed=7"]
    train(make_cfg(*base, "seed=7", "trainer.num_seeds=2", "sweep.lr=[0.05,0.4]",
                   f"sweep.engine={engine}", run_dir=tmp_path / "sweep"))
    members = json.loads((tmp_path / "sweep" / "members.json").read_text())

    for member in [members[index] for index in checked]:
        single = tmp_path / f"single_{member['member']}"
        train(make_cfg(*base, f"seed={member['seed']}", f"optimizer.lr={member['lr']}",
                       run_dir=single))
        member_dir = tmp_path / "sweep" / "members" / f"member_{member['member']}"
        assert load_params(member_dir / "params.safetensors")[0]["W"].dtype == np.float64
        assert max_param_difference(member_dir / "params.safetensors",
                                    single / "params.safetensors") < 1e-10, member
        expected = json.loads((single / "summary.json").read_text())
        got = json.loads((member_dir / "summary.json").read_text())
        for key in ("val/best_loss", "train/epoch_loss", "test/acc", "test/auc"):
            assert got[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12)


@pytest.mark.slow
def test_cli_divergence_a_member_is_reported_every_member_exits_3(tmp_path):
    """One lr diverging: exit 0 and a report; every member diverging: exit 3 (both at once)."""
    common = ["logger=none", "logger.plots=false", "trainer.progress=false", "trainer.epochs=4",
              "trainer.num_seeds=2"]
    runs = {
        name: subprocess.Popen(
            [sys.executable, str(TRAIN_SCRIPT), *common, lrs, f"run_dir={tmp_path / name}"],
            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name, lrs in (("one", "sweep.lr=[0.1,1e38]"), ("every", "sweep.lr=[1e38]"))
    }
    (out, err), (_, every_err) = (runs[name].communicate(timeout=300) for name in runs)
    assert runs["one"].returncode == 0, err
    assert "(2 diverged at epoch 1, 1)" in out
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())  # strict JSON
    assert summary["sweep/best_lr"] == 0.1 and np.isfinite(summary["val/best_loss"])
    assert runs["every"].returncode == 3, every_err
    assert "error: every member diverged (at epochs 1, 1)" in every_err
    assert "Traceback" not in every_err


def test_a_run_trains_and_reports_the_configured_cost_and_activation(make_cfg, tmp_path):
    """loss=mse, model.activation=tanh: val/loss is the mean ½(σ(z_L) − y)² of the saved model."""
    import jax

    from deltaprop.losses import loss_fn
    from deltaprop.run.config import read
    from deltaprop.run.setup import RunSetup

    cfg = make_cfg("loss=mse", "model.activation=tanh", "trainer.precision=float64",
                   "trainer.epochs=4", "trainer.eval_every=4")
    metrics = train(cfg)
    params = [{leaf: jax.numpy.asarray(layer[leaf]) for leaf in ("W", "b")}
              for layer in load_params(tmp_path / "run" / "params.safetensors")]
    arrays = RunSetup.create(read(cfg).training()).arrays
    for split in ("train", "val"):
        expected = loss_fn(params, arrays[f"x_{split}"], arrays[f"y_{split}"], loss="mse",
                           activation="tanh")
        assert metrics[f"{split}/loss"] == pytest.approx(float(expected), rel=1e-9), split
        as_bce = loss_fn(params, arrays[f"x_{split}"], arrays[f"y_{split}"])
        assert abs(metrics[f"{split}/loss"] - float(as_bce)) > 1e-3  # not the BCE


# ---------------------------------------------------------------- the run, compiled once


LOWERINGS: list[str] = []  # every program lowered to XLA in this process, by name


def _count_lowerings(event: str, seconds: float, **kwargs) -> None:
    if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
        LOWERINGS.append(kwargs.get("fun_name", "?"))


jax.monitoring.register_event_duration_secs_listener(_count_lowerings)


@pytest.mark.parametrize("sweep", [False, True], ids=["single", "sweep"])
def test_a_second_run_of_the_same_shapes_lowers_no_program(make_cfg, tmp_path, recorded_runs,
                                                           sweep):
    """Only values that live in the state differ (seeds, lr, weight decay, init scale, the
    number of epochs of a constant schedule): init, epoch, evaluation, the gradient check of
    the W&B table and the decision-boundary figure are all reused."""
    shape = ["logger=wandb", "logger.plots=true", "trainer.epochs=3"]
    shape += ["trainer.num_seeds=2", "sweep.lr=[0.5,1.0]"] if sweep else []
    train(make_cfg(*shape, run_dir=tmp_path / "first"))
    LOWERINGS.clear()
    other = ["seed=7", "optimizer.weight_decay=0.01", "trainer.epochs=4"]
    other += ["sweep.lr=[0.1,0.2]", "sweep.init_scale=[0.5]"] if sweep else [
        "optimizer.lr=0.3", "model.init_scale=0.5"]
    result = train(make_cfg(*shape, *other, run_dir=tmp_path / "second"))
    assert LOWERINGS == []
    assert result.members[0].seed == 7 and len(result.histories[0]) == 3  # it did train anew


def test_train_returns_the_run(make_cfg, tmp_path):
    """Metrics as a mapping, and per member: its history, initial and final parameters."""
    from deltaprop.population import initial_params

    result = train(make_cfg("trainer.num_seeds=2", "sweep.init_scale=[2.0]", "seed=3"))
    run = tmp_path / "run"
    assert result.run_dir == run and dict(result) == result.metrics
    assert result["val/best_loss"] == json.loads((run / "summary.json").read_text())[
        "val/best_loss"]
    for m, member in enumerate(result.members):
        directory = run / "members" / f"member_{m}"
        rows = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
        assert json.loads(json.dumps(list(result.histories[m]))) == rows
        start = initial_params(member.seed, [2, 4, 1], "xavier", np.float32, 2.0)  # × scale
        for ours, expected in zip(result.initial_params[m], start):
            np.testing.assert_array_equal(ours["W"], np.asarray(expected["W"]))
        for ours, saved in zip(result.final_params[m], load_params(directory /
                                                                    "params.safetensors")):
            np.testing.assert_array_equal(ours["W"], saved["W"])
    assert result.diverged == (False, False) and [m.seed for m in result.members] == [3, 4]
