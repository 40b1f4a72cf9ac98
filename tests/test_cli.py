"""The console commands (deltaprop.cli): the `--key=value` arguments of a W&B sweep agent, the
command line an agent builds from the packaged W&B sweep file (conf/wandb_sweep.yaml), and
`pip install .` (not editable) into a fresh environment, run from another directory."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, SMALL, cli_env

from deltaprop.cli.launch import hydra_overrides

SWEEP_FILE = ROOT / "conf" / "wandb_sweep.yaml"


def test_agent_flags_become_hydra_overrides():
    argv = ["--optimizer.lr=0.1", "--model.hidden=[8,8]", "seed=3", "-m", "--multirun",
            "--config-name=config", "--cfg", "job", "+trainer.x=1"]
    assert hydra_overrides(argv) == ["optimizer.lr=0.1", "model.hidden=[8,8]", "seed=3", "-m",
                                     "--multirun", "--config-name=config", "--cfg", "job",
                                     "+trainer.x=1"]


def agent_command(sweep: dict, values: dict, macro: str | None = None) -> list[str]:
    """The command line `wandb agent` runs for one trial (wandb_agent.Agent._command_run), with
    wandb's own formatting of the trial's values."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    command = list(sweep["command"])
    if macro is not None:  # the same file with another argument macro
        command = [macro if c == "${args_no_hyphens}" else c for c in command]
    variables = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    variables |= {"env": ["/usr/bin/env"], "program": [sweep["program"]]}
    line = []
    for chunk in command:
        line += variables[chunk[2:-1]] if chunk.startswith("${") else [chunk]
    return line


def trial_values(tmp_path: Path, run: str) -> dict:
    """A trial's values: the sweep file's parameters (one value each) and a small, quick run."""
    small = dict(override.split("=", 1) for override in SMALL)
    return {"optimizer.lr": 0.37, "model.hidden": "[8]", "optimizer.weight_decay": 0.0001,
            **{k: v for k, v in small.items() if k != "model.hidden" and not k.startswith("logger")},
            "logger.plots": False, "logger.log_gradcheck": False,
            "hydra.run.dir": str(tmp_path / run)}


def test_sweep_file_searches_config_keys():
    from deltaprop import compose

    sweep = yaml.safe_load(SWEEP_FILE.read_text())
    assert sweep["metric"] == {"name": "val/best_loss", "goal": "minimize"}
    assert sweep["program"] == "deltaprop-train"  # the console script, checkout or wheel
    assert "${args_no_hyphens}" in sweep["command"]
    for key in sweep["parameters"]:  # every parameter is a key of the config
        assert compose().get(key.split(".")[0]) is not None and \
            compose()[key.split(".")[0]].get(key.split(".")[1]) is not None, key


@pytest.fixture
def agent_trial(run_command, monkeypatch):
    """(command line, run id) -> Completed: one trial as `wandb agent` runs it, the command in
    this process (W&B's trial environment set, no API key)."""

    import wandb

    def trial(command: list[str], run_id: str):
        assert command[:2] == ["/usr/bin/env", "deltaprop-train"]
        monkeypatch.setenv("WANDB_SWEEP_ID", "abc123")
        monkeypatch.setenv("WANDB_RUN_ID", run_id)
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
        # W&B reads its environment once per session: a new one, as the agent's new process.
        wandb.teardown()
        return run_command("train", *command[2:])

    yield trial
    wandb.teardown()  # the next test's W&B session without this trial's run id


@pytest.mark.parametrize("macro", [None, "${args}"], ids=["args_no_hyphens", "args"])
def test_the_command_line_a_wandb_agent_builds(tmp_path, agent_trial, macro):
    sweep = yaml.safe_load(SWEEP_FILE.read_text())
    values = trial_values(tmp_path, "trial")
    command = agent_command(sweep, values, macro)
    assert ("--optimizer.lr=0.37" in command) == (macro == "${args}")
    done = agent_trial(command, "trial0001")
    assert done.returncode == 0, done.stderr[-3000:]
    # logger.mode=online without a key: logged offline, said in one line
    assert "logging offline instead" in done.stdout
    run = tmp_path / "trial"
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert config["optimizer"]["lr"] == 0.37 and config["model"]["hidden"] == [8]
    assert config["optimizer"]["weight_decay"] == 0.0001
    assert json.loads((run / "summary.json").read_text())["val/best_loss"] > 0
    (offline,) = (run / "wandb").glob("offline-run-*")
    assert offline.name.endswith("-trial0001")  # the agent's run id


def test_a_wandb_trial_is_one_member(tmp_path, agent_trial):
    sweep = yaml.safe_load(SWEEP_FILE.read_text())
    values = trial_values(tmp_path, "trial") | {"trainer.num_seeds": 2}
    done = agent_trial(agent_command(sweep, values), "trial0002")
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = done.stderr.strip().splitlines()
    assert "W&B sweep agent" in line and "trainer.num_seeds=2" in line
    assert not (tmp_path / "trial" / "wandb").exists()


@pytest.mark.slow
def test_pip_install_gives_commands_that_train_anywhere(tmp_path):
    """`pip install .` as a user runs it (a wheel built in pip's own isolated environment, with
    the setuptools pyproject.toml asks for) into a fresh venv, then the commands from an empty
    directory: the configs come from the installed package (pkg://deltaprop.conf)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    # Its own site-packages first, then this environment's (jax & co. are not downloaded
    # again; a path in a .pth file is searched, its .pth files, the checkout's editable
    # install among them, are not run).
    own = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    Path(own, "this_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    source = tmp_path / "source"  # a copy: building writes build/ beside pyproject.toml
    source.mkdir()
    for folder in ("src", "conf"):
        shutil.copytree(ROOT / folder, source / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(source)],
        capture_output=True, text=True, timeout=600, check=False,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert install.returncode == 0, install.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = cli_env()
    env.pop("PYTHONPATH", None)
    env["PATH"] = os.pathsep.join([str(bin_dir), env["PATH"]])

    def command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=300, check=False)

    where = subprocess.run(
        [str(python), "-c", ("import deltaprop, importlib.resources as r; "
         "print(deltaprop.__file__); print(r.files('deltaprop.conf') / 'config.yaml')")],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True, timeout=120,
    ).stdout.split()
    assert all(path.startswith(str(venv)) for path in where), where  # not the checkout
    assert Path(where[1]).is_file()
    train = command("deltaprop-train", *SMALL, "print_config=false")
    assert train.returncode == 0, train.stderr[-3000:]
    (run,) = (elsewhere / "outputs" / "train" / "default").iterdir()
    assert json.loads((run / "summary.json").read_text())["val/best_loss"] > 0
    log = (run / "train.log").read_text()
    assert "final metrics" in log and "JAX " in log  # console output is in the log file
    scored = command("deltaprop-eval", f"run={run}", "logger=none")
    assert scored.returncode == 0 and "test/acc" in scored.stdout, scored.stderr[-2000:]
    check = command("deltaprop-gradcheck", "model.hidden=[3]")
    assert check.returncode == 0 and "all passed" in check.stdout, check.stderr[-2000:]
    bad = command("deltaprop-train", "trainer.grad=autodif")
    assert bad.returncode == 2 and "expected one of [manual, autodiff]" in bad.stderr
    sweep_file = command("deltaprop-train", "--wandb-sweep-file").stdout.strip()
    assert sweep_file.startswith(str(venv)) and Path(sweep_file).is_file()
    for name in ("speed-of-learning", "learning-slowdown", "vanishing-gradients", "playground"):
        assert command(f"deltaprop-{name}", "--help").returncode == 0, name


def test_the_sweep_syntax_the_readme_shows_expands_as_it_says():
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    def expand(override: str) -> list[str]:
        parsed = OverridesParser.create().parse_overrides([override])
        return [job[0] for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]

    assert expand("seed=range(0,4)") == ["seed=0", "seed=1", "seed=2", "seed=3"]
    assert expand("model.hidden=[8],[16,16]") == ["model.hidden=[8]", "model.hidden=[16,16]"]
    options = sorted(p.stem for p in (ROOT / "conf" / "optimizer").glob("*.yaml"))
    parsed = OverridesParser.create().parse_overrides(["optimizer=glob(*,exclude=momentum)"])
    globbed = parsed[0].value().filter(options)
    assert sorted(globbed) == sorted(set(options) - {"momentum"}) == ["adam", "sgd"]
