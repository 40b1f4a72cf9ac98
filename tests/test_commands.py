"""The commands as Hydra, W&B and JAX users expect them (deltaprop.cli, cli/launch.py, cli/help.py,
run/evaluate.py): each its own config, one output layout, an eval command, W&B names, and the
checks made before Hydra starts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import CONF, SMALL, compose_config

from deltaprop.cli.launch import conf_dir, refusal
from deltaprop.errors import ConfigError, OutputError
from deltaprop.run.config import COMMANDS, experiment_owner, read
from deltaprop.run.evaluate import evaluate_from_config
from deltaprop.run.predict import PredictError
from deltaprop.run.train import train
from deltaprop.settings import TrainSettings


def eval_cfg(*overrides: str):
    return compose_config("logger=none", *overrides, config_name="eval")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run of this module's own: deltaprop-eval writes into it (<run>/eval/)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train(compose_config(*SMALL, f"run_dir={run}", "trainer.epochs=4", "trainer.eval_every=4"))
    return run


# ---------------------------------------------------------------- each command its own config


def test_the_training_config_holds_training_settings_only():
    cfg = compose_config()
    assert set(cfg) == {field.name for field in dataclasses.fields(TrainSettings)}
    for name, command in COMMANDS.items():  # every command composes its own
        composed = compose_config(config_name=command.config)
        assert isinstance(read(composed, command.settings), command.settings), name


@pytest.mark.parametrize(("experiment", "owner"), [
    ("learning_slowdown", "learning_slowdown"), ("nielsen_speed_of_learning", "speed_of_learning"),
    ("worked_example_by_hand", "worked_example"), ("seed_sweep", None),
    ("vanishing_gradients", None), ("worked_example", None),
])
def test_an_experiment_of_another_command_is_refused_naming_it(experiment, owner):
    found = experiment_owner(CONF / "experiment" / f"{experiment}.yaml")
    assert (found and found.name) == owner
    problem = refusal(COMMANDS["train"], [f"experiment={experiment}"], CONF)
    if owner is None:
        assert problem is None
    else:
        script = COMMANDS[owner].script
        assert problem == (f"experiment={experiment} belongs to {script}, not deltaprop-train: "
                           f"run `{script} experiment={experiment}`")
        assert refusal(COMMANDS[owner], [f"experiment={experiment}"], CONF) is None


def test_a_missing_plugin_or_backend_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name, *args):
        if name == "hydra_plugins.hydra_optuna_sweeper":
            raise ModuleNotFoundError(name)  # as when no hydra_plugins package is there
        return None if name == "libtpu" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert refusal(COMMANDS["train"], ["-m", "hparams_search=optuna"], CONF) == (
        "hparams_search=optuna needs a Hydra plugin that is not installed: "
        "pip install 'deltaprop[cluster]'")
    monkeypatch.setenv("JAX_PLATFORMS", "tpu")
    assert refusal(COMMANDS["train"], [], CONF) == (
        "JAX_PLATFORMS=tpu, but JAX's tpu backend is not installed: pip install 'deltaprop[tpu]'")
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: (
        None if name.startswith("jax_cuda") else real(name, *args)))
    assert refusal(COMMANDS["train"], [], CONF) == (
        "JAX_PLATFORMS=cuda, but JAX's cuda backend is not installed: "
        "pip install 'deltaprop[cuda12]' or 'deltaprop[cuda13]'")


def test_a_config_composed_with_hydras_own_node_trains(make_cfg):
    cfg = compose_config(*SMALL, f"run_dir={make_cfg().run_dir}", return_hydra_config=True)
    assert "hydra" in cfg and train(cfg)["val/best_loss"] > 0


def test_predict_without_data_takes_the_runs_own_dataset(tmp_path, capsys):
    from deltaprop.run.predict import predict_from_config

    run = tmp_path / "circles"
    train(compose_config(*SMALL, "dataset=circles", f"run_dir={run}"))
    predict_from_config(compose_config(f"run={run}", f"run_dir={tmp_path / 'p'}",
                                       config_name="predict"))
    said = capsys.readouterr().out
    assert "predicting every example of the run's own dataset=circles" in said
    assert "of circles with" in said


def test_help_lists_the_commands_groups_and_keys_one_line_each():
    from deltaprop.cli.help import command_help

    text = command_help(COMMANDS["train"], CONF)
    assert "usage: deltaprop-train" in text
    assert "  optimizer        adam, momentum, sgd [sgd]" in text
    assert "learning_slowdown" not in text.split("keys (")[0]  # another command's experiment
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ")}
    assert "optimizer.lr" in lines and "1.0" in lines["optimizer.lr"]
    assert "xavier | normal | nielsen" in lines["model.init"]
    assert "epochs between checkpoints" in lines["trainer.checkpoint_every"]
    assert "gradcheck.inject" in command_help(COMMANDS["gradcheck"], CONF)
    assert conf_dir("pkg://deltaprop.conf").samefile(CONF)  # the packaged configs: conf/


# ---------------------------------------------------------------- where a run's files go


def test_a_run_from_python_keeps_its_config_and_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = train(compose_config(*SMALL))
    run = result.run_dir
    assert run.parts[:3] == ("outputs", "train", "default") and len(run.name) == 26
    saved = read(compose_config(*SMALL), TrainSettings)
    from deltaprop.run.config import read_saved_config

    assert read_saved_config(run / ".hydra" / "config.yaml") == dataclasses.replace(
        saved, run_dir=None)
    assert "final metrics:" in (run / "train.log").read_text()


def test_the_command_line_layout(run_command, tmp_path):
    """outputs/<command>/<experiment>/<time>; run_dir=X takes .hydra/ and the log too; a start
    that fails on bad input (the command line's checks, ours or Hydra's) leaves no folder."""
    def run(*args):
        return run_command("train", *SMALL, *args, cwd=tmp_path)

    for bad in (["optimizer.lr=-1"], ["trainer.foo=1"], ["optimizer.lr=abc"]):
        assert run(*bad).returncode == 2, bad
    no_run = run_command("predict", cwd=tmp_path)
    assert no_run.returncode == 2 and no_run.stderr.startswith("error: run=None"), no_run.stderr
    # A run_dir that cannot be made: one line before Hydra makes it or opens its log there.
    (tmp_path / "afile").write_text("kept")
    for command, args, cause in (("train", ["run_dir=afile"], "File exists (EEXIST"),
                                 ("train", ["-m", "seed=0,1", "run_dir=afile/sub"], "(ENOTDIR"),
                                 ("gradcheck", ["run_dir=afile/sub"], "(ENOTDIR")):
        refused = run_command(command, *args, cwd=tmp_path)
        assert refused.returncode == 2, (args, refused.stderr)
        assert refused.stderr.startswith("error: cannot create afile") and cause in refused.stderr
        assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert (tmp_path / "afile").read_text() == "kept"
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()
    assert run().returncode == 0
    (folder,) = (tmp_path / "outputs" / "train" / "default").iterdir()
    assert {".hydra", "train.log", "summary.json"} <= {p.name for p in folder.iterdir()}
    assert run(f"run_dir={tmp_path / 'mine'}").returncode == 0
    assert {".hydra", "train.log", "summary.json"} <= {p.name for p in (tmp_path / "mine").iterdir()}
    failed = run("optimizer.lr=-1")
    assert failed.returncode == 2 and failed.stderr.startswith("error: optimizer.lr=-1.0")
    assert len(list((tmp_path / "outputs" / "train" / "default").iterdir())) == 1


# ---------------------------------------------------------------- deltaprop-eval


def test_eval_scores_the_runs_test_split_as_training_did(trained, recorded_eval_runs):
    metrics = evaluate_from_config(eval_cfg(f"run={trained}", "logger=wandb"))
    summary = json.loads((trained / "summary.json").read_text())
    for key in ("test/loss", "test/acc", "test/auc"):
        assert metrics[key] == pytest.approx(summary[key], rel=1e-6), key
    assert json.loads((trained / "eval" / "test" / "metrics.json").read_text()) == \
        pytest.approx(metrics)
    assert (trained / "eval" / "test" / "predictions.csv").is_file()
    (run,) = recorded_eval_runs
    assert run.job_type == "eval" and run.group == "run" and run.summary == metrics


def test_eval_scores_another_split_or_a_csv(trained, tmp_path):
    val = evaluate_from_config(eval_cfg(f"run={trained}", "split=val"))
    assert val["val/loss"] == pytest.approx(
        [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()][-1][
            "val/loss"], rel=1e-6)
    path = tmp_path / "new.csv"
    path.write_text("x1,x2,label\n0.1,0.2,1\n1.5,-0.3,0\n-0.8,0.9,1\n")
    scored = evaluate_from_config(eval_cfg(f"run={trained}", f"csv={path}",
                                           f"out={tmp_path / 'csv'}"))
    assert set(scored) == {"new/loss", "new/acc", "new/auc"}
    with pytest.raises(PredictError, match="split='all' must be one of train, val, test"):
        evaluate_from_config(eval_cfg(f"run={trained}", "split=all"))
    (tmp_path / "afile").write_text("kept")
    for out, cause in (("afile", "EEXIST"), ("afile/sub", "ENOTDIR")):
        with pytest.raises(OutputError, match=f"^cannot create .*{out}: .*\\({cause}"):
            evaluate_from_config(eval_cfg(f"run={trained}", f"out={tmp_path / out}"))
    assert (tmp_path / "afile").read_text() == "kept"


def test_eval_refuses_data_that_are_not_the_runs_any_more(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("a,b,label\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(60)))
    run = tmp_path / "run"
    train(compose_config(*SMALL, "dataset=csv", f"dataset.path={data}", f"run_dir={run}"))
    data.write_text("a,b,label\n" + "".join(f"{2 * i},{i % 7},{i % 2}\n" for i in range(60)))
    with pytest.raises(PredictError, match="are not the data it trained on"):
        evaluate_from_config(eval_cfg(f"run={run}"))


@pytest.fixture
def recorded_eval_runs(monkeypatch):
    from conftest import RecordingLogger

    import deltaprop.run.evaluate

    runs = []
    monkeypatch.setattr(deltaprop.run.evaluate, "make_logger",
                        lambda *args, **kwargs: runs.append(RecordingLogger(*args, **kwargs))
                        or runs[-1])
    return runs


# ---------------------------------------------------------------- W&B names


def test_wandb_names_read_like_wandbs(make_cfg, recorded_runs, tmp_path):
    train(make_cfg("logger=wandb", "logger.name=my-run", "logger.notes=first try"))
    (run,) = recorded_runs
    assert run.name == "my-run" and run.group == "run" and run.console  # output.log captured
    train(make_cfg("logger=wandb", "trainer.num_seeds=2", run_dir=tmp_path / "sweep"))
    members, summary = recorded_runs[1:3], recorded_runs[3]
    assert [m.name for m in members] == ["seed0-lr1", "seed1-lr1"]
    assert {m.group for m in members} == {summary.group} == {"sweep"}  # the folder
    assert summary.console and not any(m.console for m in members)
    with pytest.raises(ConfigError, match="logger.name is the W&B run name; choose the tracker "
                                          r"with logger=none \(or logger.backend=none\)"):
        read(make_cfg("logger.name=none"))


def test_a_run_is_named_from_its_overrides():
    from deltaprop.run.tracker import name_of_overrides, run_group

    assert name_of_overrides(["optimizer.lr=0.1", "seed=3", "run_dir=/x", "logger.mode=online",
                              "hydra/launcher=local"], "default") == "lr0.1-seed3"
    assert name_of_overrides([], "seed_sweep") == "seed_sweep"
    assert run_group(Path("/a/outputs/train/default/2026")) == "train/default/2026"
    assert run_group(Path("/a/multirun/train/x/2026")) == "train/x/2026"
    assert run_group(Path("/somewhere/else")) == "else"
