"""Hydra launchers (hydra/launcher=slurm|local, hydra-submitit-launcher) and the Optuna search
(hparams_search=optuna, hydra-optuna-sweeper): the configs compose, the SLURM keys reach sbatch,
and a local submitit multirun and a three-trial search run end to end.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import pytest
import yaml
from conftest import compose_config
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
SEARCHED = {"optimizer.lr", "model.hidden", "optimizer.weight_decay"}


def hparams_search(choice: str = "optuna") -> str:
    """`hparams_search=optuna` once conf/config.yaml lists the group in its defaults; else `+`."""
    defaults = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "config.yaml").defaults)
    listed = any("hparams_search" in str(entry) for entry in defaults)
    return f"{'' if listed else '+'}hparams_search={choice}"


def compose_with_hydra(*overrides: str):
    return compose_config(*overrides, return_hydra_config=True)


def run_train(run_command, *args: str):
    """`deltaprop-train args...` run in this process; it exits 0."""
    done = run_command("train", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_slurm_launcher_config():
    launcher = compose_with_hydra("hydra/launcher=slurm").hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    for key in ("partition", "gpus_per_node", "timeout_min", "mem_gb", "cpus_per_task", "nodes",
                "tasks_per_node"):
        assert key in launcher, key
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == (1, 1, 1)
    assert launcher.submitit_folder.endswith("/.submitit/%j")


def test_local_launcher_config_hides_gpus_by_default():
    launcher = compose_with_hydra("hydra/launcher=local").hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.LocalLauncher")
    assert (launcher.gpus_per_node, launcher.nodes, launcher.tasks_per_node) == (0, 1, 1)


def test_slurm_keys_reach_the_sbatch_script(tmp_path, monkeypatch):
    """Build the sbatch script the launcher would submit (a stand-in `srun` on PATH, no cluster)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    cfg = compose_with_hydra(
        "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.nodes=2",
        "hydra.launcher.gpus_per_node=4", "hydra.launcher.tasks_per_node=4",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    # What hydra_submitit_launcher.BaseSubmititLauncher.launch does with these keys:
    executor = submitit.AutoExecutor(folder=params.pop("submitit_folder"), cluster="slurm")
    params.pop("_target_")
    params.pop("max_num_timeout")
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -u train.py", "0")
    for line in ("--partition=gpu", "--nodes=2", "--gpus-per-node=4", "--ntasks-per-node=4",
                 "--cpus-per-task=4", "--mem=16GB", "--time=60"):
        assert f"#SBATCH {line}\n" in script, line


@pytest.mark.slow
def test_local_submitit_multirun_two_jobs_with_offline_wandb(run_cli, tmp_path):
    sweep = tmp_path / "sweep"
    done = run_cli(  # submitit runs each job in a process of its own: the launch is one too
        "train.py", "-m", "hydra/launcher=local", "seed=0,1", "trainer.epochs=2", "logger=wandb",
        "logger.mode=offline", "logger.log_gradcheck=false", "trainer.progress=false",
        "dataset.n_samples=200", f"hydra.sweep.dir={sweep}", timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_ids = set()
    for job in ("0", "1"):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert math.isfinite(summary["val/best_loss"])
        overrides = yaml.safe_load((sweep / job / ".hydra" / "overrides.yaml").read_text())
        assert f"seed={job}" in overrides
        runs = list((sweep / job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, runs
        (records,) = runs[0].glob("run-*.wandb")
        assert records.stat().st_size > 0
        run_ids.add(runs[0].name.rsplit("-", 1)[1])
    assert len(run_ids) == 2  # two W&B runs, not one shared
    # Run by submitit (each job in its own process), not by Hydra's basic launcher.
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2


def test_optuna_search_space_parses_into_valid_overrides():
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
    from optuna.distributions import CategoricalDistribution, LogUniformDistribution

    sweeper = compose_with_hydra(hparams_search()).hydra.sweeper
    assert sweeper._target_.endswith("optuna_sweeper.OptunaSweeper")
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.sampler.seed is not None
    assert (sweeper.direction, sweeper.n_trials) == ("minimize", 20)
    distributions, fixed = create_params_from_overrides(
        [f"{key}={value}" for key, value in sweeper.params.items()]
    )
    assert set(distributions) == SEARCHED and not fixed
    assert isinstance(distributions["optimizer.lr"], LogUniformDistribution)
    hidden = distributions["model.hidden"]
    assert isinstance(hidden, CategoricalDistribution)
    # Optuna hands each choice back as a string; Hydra must parse it into the list of widths.
    parser = OverridesParser.create()
    widths = [parser.parse_override(f"model.hidden={choice}").value() for choice in hidden.choices]
    assert widths == [[8], [16], [32], [16, 16], [32, 32]]
    cfg = compose_config(f"model.hidden={hidden.choices[3]}")
    assert list(cfg.model.hidden) == [16, 16]


@pytest.mark.slow
def test_optuna_search_three_trials(run_command, tmp_path):
    sweep = tmp_path / "search"
    run_train(
        run_command,
        "-m", hparams_search(), "hydra.sweeper.n_trials=3", "trainer.epochs=2", "logger=none", "logger.plots=false",
        "logger.log_gradcheck=false", "trainer.progress=false", "dataset.n_samples=200",
        f"hydra.sweep.dir={sweep}",
    )
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert result["name"] == "optuna"
    assert set(result["best_params"]) == SEARCHED
    trials = {}
    for job in ("0", "1", "2"):
        summary = json.loads((sweep / job / "summary.json").read_text())
        overrides = yaml.safe_load((sweep / job / ".hydra" / "overrides.yaml").read_text())
        trials[job] = (summary["val/best_loss"], overrides)
    best_loss, best_overrides = min(trials.values(), key=lambda trial: trial[0])
    # The objective is what each trial returned: its best validation loss.
    assert result["best_value"] == pytest.approx(best_loss, rel=1e-12)
    assert f"model.hidden={result['best_params']['model.hidden']}" in best_overrides
    assert len({tuple(overrides[:3]) for _, overrides in trials.values()}) == 3  # distinct trials


@pytest.mark.slow
def test_optuna_search_goes_on_past_a_diverging_trial(run_command, tmp_path):
    """lr = 1e38 diverges (exit 3 outside a search): that trial is failed, the study finishes."""
    sweep = tmp_path / "search"
    done = run_train(
        run_command,
        # sampler seed 1 draws lr 1e38, 0.5, 1e38 for the three trials
        "-m", hparams_search(), "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.seed=1",
        "optimizer.lr=choice(0.5,1e38)", "trainer.epochs=2", "logger=none", "logger.plots=false",
        "logger.log_gradcheck=false", "trainer.progress=false", "dataset.n_samples=200",
        "print_config=false", f"hydra.sweep.dir={sweep}",
    )
    lrs = {job: yaml.safe_load((sweep / job / ".hydra" / "overrides.yaml").read_text())[0]
           for job in ("0", "1", "2")}
    diverged = [job for job, lr in lrs.items() if lr == "optimizer.lr=1e+38"]
    finished = [job for job, lr in lrs.items() if lr == "optimizer.lr=0.5"]
    assert diverged and finished, lrs
    for job in diverged:  # no results, the reason in its log and on the console
        assert not (sweep / job / "summary.json").exists()
        assert "loss became non-finite at epoch 1" in (sweep / job / "train.log").read_text()
    assert done.stdout.count("Failed experiment: loss became non-finite") == len(diverged)
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert result["best_params"]["optimizer.lr"] == 0.5
    best = min(json.loads((sweep / job / "summary.json").read_text())["val/best_loss"]
               for job in finished)
    assert result["best_value"] == pytest.approx(best, rel=1e-12)
