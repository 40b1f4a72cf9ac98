"""The training driver end to end: train(cfg) in-process and experiments/train.py as users run it.

Subprocess tests run the real command line; W&B stays offline (conftest.py sets WANDB_MODE) except
in the no-network test, which removes WANDB_MODE and points W&B at an unroutable address.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import deltaprop.config  # noqa: F401  (registers the structured config schema)
from deltaprop.config import ConfigError
from deltaprop.data import DataError
from deltaprop.serialization import load_params
from deltaprop.trainer import train

REPO = Path(__file__).parents[1]
CONF_DIR = REPO / "conf"
TRAIN_SCRIPT = REPO / "experiments" / "train.py"
RUN_FILES = (
    "metrics.jsonl",
    "summary.json",
    "loss_curves.png",
    "layer_norms.png",
    "decision_boundary.png",
    "params.safetensors",
)
QUIET = ("logger=none", "trainer.progress=false")


def compose_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    lines = [",".join(header)] + [",".join(str(cell) for cell in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def good_rows(n: int = 40) -> list[list[object]]:
    rng = np.random.default_rng(0)
    return [[*np.round(rng.normal(size=2), 3), i % 2] for i in range(n)]


# ---------------------------------------------------------------- train(cfg) in-process


@pytest.mark.slow
def test_moons_with_adam_end_to_end(tmp_path):
    """The user's first run: moons, adam, 150 epochs; the run dir holds every promised file."""
    cfg = compose_config(
        *QUIET,
        "optimizer=adam",
        "optimizer.lr=0.02",
        "trainer.epochs=150",
        "trainer.eval_every=50",
        "logger.log_gradcheck=false",
        f"run_dir={tmp_path}",
    )
    final = train(cfg)

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
    assert [row["epoch"] for row in history] == [50, 100, 150]
    assert all(namespaced - {"test/loss", "test/acc", "test/auc"} <= set(row) for row in history)
    assert history[-1]["val/acc"] == summary["val/acc"]

    params = load_params(tmp_path / "params.safetensors")
    assert [layer["W"].shape for layer in params] == [(2, 16), (16, 16), (16, 1)]


@pytest.mark.slow
def test_manual_and_autodiff_runs_end_in_the_same_params(tmp_path):
    """trainer.grad=manual vs autodiff, float64, 5 epochs: params.safetensors agree to 1e-10."""
    params = {}
    for grad in ("manual", "autodiff"):
        run_dir = tmp_path / grad
        train(
            compose_config(
                *QUIET,
                f"trainer.grad={grad}",
                "trainer.precision=float64",
                "trainer.epochs=5",
                "trainer.eval_every=5",
                "model.hidden=[8,8]",
                "dataset.n_samples=200",
                "logger.log_gradcheck=false",
                f"run_dir={run_dir}",
            )
        )
        params[grad] = load_params(run_dir / "params.safetensors")
    largest_bias = 0.0
    for manual, autodiff in zip(params["manual"], params["autodiff"], strict=True):
        for leaf in ("W", "b"):
            assert manual[leaf].dtype == np.float64
            np.testing.assert_allclose(manual[leaf], autodiff[leaf], rtol=0, atol=1e-10)
        largest_bias = max(largest_bias, float(np.abs(manual["b"]).max()))
    assert largest_bias > 1e-3  # biases start at 0: training moved them


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (["optimizer.lr=-1"], ConfigError, "optimizer.lr=-1.0"),
        (["dataset=csv", "dataset.path=/nonexistent/data.csv"], DataError, "file not found"),
    ],
)
def test_bad_input_fails_before_the_run_dir_exists(tmp_path, overrides, error, message):
    run_dir = tmp_path / "run"
    cfg = compose_config(*QUIET, *overrides, f"run_dir={run_dir}")
    with pytest.raises(error, match=message):
        train(cfg)
    assert not run_dir.exists()


# ---------------------------------------------------------------- the command line


def run_cli(*arguments: str, cwd: Path, env=None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), *arguments],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


BAD_INPUTS = {
    # case: (overrides, CSV rows to write or None, text the error must contain)
    "negative_lr": (["optimizer.lr=-1"], None, "optimizer.lr=-1.0"),
    "zero_width": (["model.hidden=[4,0]"], None, "model.hidden=[4, 0]"),
    "zero_epochs": (["trainer.epochs=0"], None, "trainer.epochs=0"),
    "zero_batch_size": (["trainer.batch_size=0"], None, "trainer.batch_size=0"),
    "csv_missing_file": (
        ["dataset=csv", "dataset.path={tmp}/missing.csv"],
        None,
        "dataset.path='{tmp}/missing.csv': file not found",
    ),
    "csv_without_label_column": (
        ["dataset=csv", "dataset.path={tmp}/data.csv"],
        (["x1", "x2", "target"], good_rows()),
        "dataset.label='label' is not a column",
    ),
    "labels_0_2": (
        ["dataset=csv", "dataset.path={tmp}/data.csv"],
        (["x1", "x2", "label"], [[*row[:2], 2 * row[2]] for row in good_rows()]),
        "labels must be 0 or 1; found 2",
    ),
    "nan_feature": (
        ["dataset=csv", "dataset.path={tmp}/data.csv"],
        (["x1", "x2", "label"], [["nan", 0.5, 1], *good_rows()]),
        "features contain non-finite values: column 'x1' has 1 NaN/inf values",
    ),
}


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory):
    """Start every bad-input command at once (each is mostly import time), keyed by case."""
    processes = {}
    for case, (overrides, csv, _) in BAD_INPUTS.items():
        tmp = tmp_path_factory.mktemp(case)
        if csv is not None:
            write_csv(tmp / "data.csv", *csv)
        arguments = [override.format(tmp=tmp) for override in overrides]
        arguments.append(f"hydra.run.dir={tmp / 'run'}")
        process = subprocess.Popen(
            [sys.executable, str(TRAIN_SCRIPT), *arguments],
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes[case] = (process, tmp)
    yield processes
    for process, _ in processes.values():
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_cli_rejects_bad_input_with_its_message(bad_input_runs, case):
    process, tmp = bad_input_runs[case]
    _, stderr = process.communicate(timeout=180)
    message = BAD_INPUTS[case][2].format(tmp=tmp)
    assert process.returncode == 2, stderr
    assert f"error: {message}" in stderr
    assert "Traceback" not in stderr
    assert not list(tmp.rglob("wandb")), "a W&B run was started for bad input"
    assert not (tmp / "run" / "summary.json").exists()


@pytest.mark.slow
def test_multirun_gives_each_job_its_own_offline_wandb_run_in_one_group(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli(
        "-m",
        "seed=0,1",
        "trainer.epochs=2",
        "trainer.progress=false",
        "dataset.n_samples=200",
        "model.hidden=[4]",
        "logger.log_gradcheck=false",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    runs = sorted(sweep_dir.glob("*/wandb/offline-run-*"))
    assert len(runs) == 2, runs
    assert {run.parent.parent.name for run in runs} == {"0", "1"}  # one per job directory
    run_ids = {run.name.rsplit("-", 1)[1] for run in runs}
    assert len(run_ids) == 2
    group = f"{sweep_dir.parent.name}/{sweep_dir.name}".encode()
    for run in runs:
        job = run.parent.parent.name
        record = (run / f"run-{run.name.rsplit('-', 1)[1]}.wandb").read_bytes()
        assert group in record  # both runs in the sweep's group
        assert f"default-{job}".encode() in record  # each named after its job
        assert (run.parent.parent / "summary.json").exists()


@pytest.mark.slow
def test_default_run_needs_no_network(tmp_path):
    """The defaults (W&B offline) with WANDB_MODE unset and W&B pointed at a dead address."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_")}
    env["WANDB_BASE_URL"] = "http://127.0.0.1:9"
    run_dir = tmp_path / "run"
    result = run_cli(
        "trainer.epochs=5", f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    runs = list(run_dir.glob("wandb/offline-run-*"))
    assert len(runs) == 1
    assert f"run directory: {run_dir.resolve()}" in result.stdout
    assert f"W&B run: {runs[0].resolve()}" in result.stdout
    assert "test/acc" in result.stdout
    for name in RUN_FILES:
        assert (run_dir / name).exists(), name
