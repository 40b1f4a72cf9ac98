"""Tests for deltaprop.run.loop: checkpoints, exact resume and the NaN guard, for single runs and
sweeps alike.

Exact resume is checked bit for bit: the final parameters and metrics of a resumed run equal an
uninterrupted run's, in-process (checkpoints lost or half-written) and from the command line
(a run SIGKILLed mid-training). A diverging sweep member is frozen at its last finite state and
the others train on exactly as they would beside a finite member.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import assert_same_params

from deltaprop.io import checkpoints
from deltaprop.io.checkpoints import CheckpointError
from deltaprop.io.files import load_params
from deltaprop.nan_guard import TrainingDiverged
from deltaprop.population import initial_params
from deltaprop.run.train import train

SWEEP = ["trainer.num_seeds=2", "sweep.lr=[0.5,2.0]"]
MEMBERS = range(4)


def member_file(run_dir: Path, index: int, name: str) -> Path:
    return run_dir / "members" / f"member_{index}" / name


# ---------------------------------------------------------------- epoch 0


def test_a_fresh_run_first_evaluates_its_initial_parameters(make_cfg, tmp_path, recorded_runs):
    """Row 0 of the history is the evaluation of the initial parameters, before any step (no
    train/epoch_loss: nothing was trained), logged to W&B at step 0; strict JSON throughout."""
    from deltaprop.diagnostics import evaluate, layer_statistics
    from deltaprop.run.config import read
    from deltaprop.run.setup import model_of, prepare_data

    cfg = make_cfg("trainer.epochs=2", "trainer.eval_every=1", "logger=wandb")
    train(cfg)
    text = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    history = [json.loads(line) for line in text.splitlines()]
    assert [row["epoch"] for row in history] == [0, 1, 2]
    initial = history[0]
    assert "train/epoch_loss" not in initial and "train/epoch_loss" in history[1]
    assert initial["val/best_loss"] == initial["val/loss"]
    splits = prepare_data(read(cfg))
    params = initial_params(cfg.seed, model_of(read(cfg), splits).sizes, cfg.model.init,
                            np.float32)
    x, y = np.float32(splits.x_train), np.float32(splits.y_train)
    assert initial["train/loss"] == pytest.approx(float(evaluate(params, x, y)["loss"]), rel=1e-5)
    x_val, y_val = np.float32(splits.x_val), np.float32(splits.y_val)
    assert initial["val/loss"] == pytest.approx(
        float(evaluate(params, x_val, y_val)["loss"]), rel=1e-5)
    for key, value in layer_statistics(params, x, y).items():
        assert initial[f"grads/{key}"] == pytest.approx(float(value), rel=1e-4, abs=1e-9), key
    assert initial["train/loss"] != pytest.approx(history[1]["train/loss"], rel=1e-6)
    (run,) = recorded_runs
    assert [step for step, _ in run.steps] == [0, 1, 2]


# ---------------------------------------------------------------- saving and retention


def test_retention_keeps_the_newest(make_cfg, tmp_path):
    train(make_cfg("trainer.epochs=5", "trainer.checkpoint_every=1", "trainer.keep_checkpoints=2"))
    root = tmp_path / "run" / "checkpoints"
    assert checkpoints.complete_steps(root) == [4, 5]
    assert sorted(child.name for child in root.iterdir() if child.is_dir()) == ["4", "5"]


def test_final_epoch_is_saved_off_the_interval(make_cfg, tmp_path):
    train(make_cfg("trainer.epochs=5", "trainer.checkpoint_every=2"))
    assert checkpoints.complete_steps(tmp_path / "run" / "checkpoints") == [2, 4, 5]


def test_no_checkpoints_when_off(make_cfg, tmp_path):
    train(make_cfg("trainer.epochs=2"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resume_auto_without_checkpoint_starts_fresh(make_cfg, tmp_path, capsys):
    train(make_cfg("trainer.epochs=2", "trainer.checkpoint_every=1", "trainer.resume=auto"))
    assert "no complete checkpoint" in capsys.readouterr().out
    assert checkpoints.complete_steps(tmp_path / "run" / "checkpoints") == [1, 2]


def test_fresh_run_refuses_to_mix_with_existing_checkpoints(make_cfg, tmp_path):
    train(make_cfg("trainer.epochs=2", "trainer.checkpoint_every=1"))
    for name in ("summary.json", "metrics.jsonl", "params.safetensors"):
        (tmp_path / "run" / name).unlink()  # only the checkpoints are left
    with pytest.raises(CheckpointError, match="already holds checkpoints .* trainer.resume=auto"):
        train(make_cfg("trainer.epochs=4", "trainer.checkpoint_every=1",
                       "run_dir_exists=overwrite"))


def test_a_last_epoch_checkpoint_saved_before_its_evaluation_is_refused(make_cfg, tmp_path):
    train(make_cfg("trainer.epochs=4", "trainer.eval_every=4", "trainer.checkpoint_every=3"))
    with pytest.raises(CheckpointError, match="is at the last epoch \\(3\\) but was saved before "
                                              "that epoch was evaluated"):
        train(make_cfg("trainer.epochs=3", f"trainer.resume={tmp_path / 'run' / 'checkpoints' / '3'}",
                       run_dir=tmp_path / "other"))


def test_checkpoint_past_the_last_epoch_is_refused(make_cfg, tmp_path):
    train(make_cfg("trainer.epochs=3", "trainer.checkpoint_every=3"))
    with pytest.raises(CheckpointError, match="at epoch 3, past trainer.epochs=2"):
        train(make_cfg("trainer.epochs=2", f"trainer.resume={tmp_path / 'run'}",
                       run_dir=tmp_path / "other"))


# ---------------------------------------------------------------- exact resume, in-process


def lose_checkpoints_after(run_dir: Path, step: int, saved: list[str]) -> Path:
    """Move `saved` outputs to run_dir/../reference; delete the checkpoints after `step` and
    leave what a kill during a save leaves (an orbax temporary), and a step directory whose
    contents are another epoch's (as a bad copy would leave it)."""
    reference = run_dir.parent / "reference"
    reference.mkdir()
    for name in saved:
        shutil.move(run_dir / name, reference / name)
    root = run_dir / "checkpoints"
    for later in checkpoints.complete_steps(root):
        if later > step:
            shutil.rmtree(root / str(later))
    shutil.copytree(root / str(step), root / f"{step + 1}.orbax-checkpoint-tmp-1700000000")
    shutil.copytree(root / str(step), root / str(step + 2))  # holds epoch `step`, not step + 2
    return reference


@pytest.mark.slow
def test_resume_auto_skips_half_written_checkpoints_and_is_exact(make_cfg, tmp_path):
    overrides = ["trainer.epochs=6", "trainer.checkpoint_every=1", "trainer.keep_checkpoints=10",
                 "optimizer=adam", "optimizer.lr=0.05", "optimizer.schedule=cosine"]
    run_dir = tmp_path / "run"
    train(make_cfg(*overrides))
    reference = lose_checkpoints_after(run_dir, 3, ["params.safetensors", "metrics.jsonl"])

    train(make_cfg(*overrides, "trainer.resume=auto"))

    assert_same_params(run_dir / "params.safetensors", reference / "params.safetensors")
    assert (run_dir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    root = run_dir / "checkpoints"
    assert checkpoints.complete_steps(root) == [1, 2, 3, 4, 5, 6]
    assert not any("tmp" in child.name for child in root.iterdir())  # orbax's temporary: gone
    assert (root / "5.unusable").is_dir()  # the bad step: set aside, never deleted


@pytest.mark.slow
def test_sweep_resume_is_exact_and_continues_every_member_run(make_cfg, tmp_path, recorded_runs):
    overrides = [*SWEEP, "trainer.epochs=6", "trainer.checkpoint_every=1",
                 "trainer.keep_checkpoints=10", "optimizer=adam", "optimizer.lr=0.05"]
    run_dir = tmp_path / "run"
    train(make_cfg(*overrides))
    first_runs = list(recorded_runs)
    reference = lose_checkpoints_after(run_dir, 2, ["members", "members.csv"])
    recorded_runs.clear()

    train(make_cfg(*overrides, "trainer.resume=auto"))

    for index in MEMBERS:
        assert_same_params(member_file(run_dir, index, "params.safetensors"),
                           member_file(reference, index, "params.safetensors"))
        assert (member_file(run_dir, index, "metrics.jsonl").read_text()
                == member_file(reference, index, "metrics.jsonl").read_text())
    assert (run_dir / "members.csv").read_text() == (reference / "members.csv").read_text()
    # Every member's W&B run, and the summary run, continue under their ids, in their group.
    assert [run.resume_id for run in recorded_runs] == [run.run_id for run in first_runs]
    assert {run.group for run in recorded_runs} == {first_runs[0].group}
    # The resumed member runs get the epochs after the checkpoint only.
    assert [step for step, _ in recorded_runs[0].steps] == [4, 6]


@pytest.mark.slow
def test_resume_from_a_step_directory_of_another_run(make_cfg, tmp_path, capsys):
    train(make_cfg("trainer.epochs=4", run_dir=tmp_path / "full"))
    train(make_cfg("trainer.epochs=4", "trainer.checkpoint_every=2", run_dir=tmp_path / "first"))
    step = tmp_path / "first" / "checkpoints" / "2"
    train(make_cfg("trainer.epochs=4", f"trainer.resume={step}", run_dir=tmp_path / "second"))
    assert f"resuming from {step} (epoch 2 of 4)" in capsys.readouterr().out
    assert_same_params(tmp_path / "second" / "params.safetensors",
                       tmp_path / "full" / "params.safetensors")


@pytest.mark.slow
def test_resumed_run_continues_the_same_wandb_run(make_cfg, tmp_path):
    common = ["logger=wandb", "logger.mode=offline", "trainer.checkpoint_every=1"]
    train(make_cfg(*common, "trainer.epochs=2"))
    train(make_cfg(*common, "trainer.epochs=3", "trainer.resume=auto"))
    # Two offline runs of one id: wandb names a run's folder offline-run-<time>-<id>, with a
    # -1 after it when both start within the same second; the id is in run-<id>.wandb.
    runs = sorted((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 2
    assert len({path.name for path in runs}) == 1, runs


# ---------------------------------------------------------------- the NaN guard, single runs

# lr·weight_decay = 1000: θ ← θ − η(g + λθ) multiplies θ by about −999 per step, so the weights
# overflow float32 within a few epochs.
EXPLODING = ["dataset.n_samples=200", "trainer.epochs=10", "optimizer.weight_decay=1e3"]


@pytest.mark.slow
def test_divergence_stops_training_keeps_good_checkpoints_and_fails_the_run(
    make_cfg, tmp_path, recorded_runs
):
    run_dir = tmp_path / "run"
    cfg = make_cfg(*EXPLODING, "trainer.checkpoint_every=1", "trainer.keep_checkpoints=20",
                   "trainer.eval_every=1")
    with pytest.raises(TrainingDiverged) as error:
        train(cfg)
    message = str(error.value)
    match = re.match(r"(loss|parameters) became non-finite at epoch (\d+); "
                     r"first non-finite parameter: layer 2 W; last good checkpoint: ", message)
    assert match, message
    epoch = int(match.group(2))
    assert 1 < epoch < 10

    root = run_dir / "checkpoints"
    assert checkpoints.complete_steps(root) == list(range(1, epoch))  # the bad state not saved
    assert f"{root / str(epoch - 1)} (epoch {epoch - 1})" in message
    (run,) = recorded_runs
    assert run.exit_code == 1  # the W&B run is marked failed
    assert [step for step, _ in run.steps] == list(range(epoch))  # 0: at init; the bad epoch not logged
    assert not (run_dir / "params.safetensors").exists()
    kept = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in kept] == list(range(epoch))  # what was logged is kept

    # The last good checkpoint resumes: a run of epoch - 1 epochs from it trains nothing more.
    train(make_cfg(*EXPLODING, f"trainer.epochs={epoch - 1}", f"trainer.resume={root}",
                   run_dir=tmp_path / "good"))
    params = load_params(tmp_path / "good" / "params.safetensors")
    assert all(np.isfinite(layer[leaf]).all() for layer in params for leaf in ("W", "b"))


def test_non_finite_parameters_are_named_so_on_an_evaluation_epoch_too(make_cfg):
    """Full batches: one step per epoch, its loss computed before the update that overflows."""
    with pytest.raises(TrainingDiverged, match=r"^parameters became non-finite at epoch \d+; "
                                               r"first non-finite parameter: layer 2 W"):
        train(make_cfg(*EXPLODING, "trainer.batch_size=1000", "trainer.eval_every=1",
                       "trainer.epochs=40"))


def test_divergence_without_checkpoints_says_so(make_cfg):
    with pytest.raises(TrainingDiverged, match=r"at epoch \d+; .*no checkpoint to go back to "
                                               r"\(trainer.checkpoint_every=0\)"):
        train(make_cfg(*EXPLODING))


def test_huge_learning_rate_overflows_the_loss(make_cfg):
    """The weights stay finite, but the mean loss over the training split overflows float32."""
    cfg = make_cfg(*EXPLODING, "optimizer.weight_decay=0", "optimizer.lr=1e37",
                   "trainer.eval_every=1")
    with pytest.raises(TrainingDiverged, match=r"loss became non-finite at epoch \d+; all "
                                               r"parameters are still finite"):
        train(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [EXPLODING, ["optimizer.lr=1e38", "trainer.eval_every=1"]],
                         ids=["weight decay explodes", "the first step overflows"])
def test_debug_nans_names_the_operation_and_is_scoped(make_cfg, overrides):
    """Whatever makes the first NaN or inf, the training step is stopped there and the
    operation named: never a FloatingPointError from the evaluation after it."""
    with pytest.raises(TrainingDiverged) as error:
        train(make_cfg(*overrides, "trainer.debug_nans=true"))
    message = str(error.value)
    assert re.match(r"NaN or inf at epoch \d+ \(trainer.debug_nans\): invalid value "
                    r"\((nan|inf)\) encountered in \w+ at \w+\.py:\d+: ", message), message
    assert "rerun with trainer.debug_nans=true" not in message
    assert isinstance(error.value.__cause__, FloatingPointError)
    assert not jax.config.jax_debug_nans and not jax.config.jax_debug_infs  # restored after


# ---------------------------------------------------------------- the NaN guard, sweeps


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["packed", "vmap"])
def test_a_diverging_member_is_frozen_and_the_others_train_on(
    make_cfg, tmp_path, recorded_runs, capsys, engine
):
    common = ["trainer.num_seeds=2", "trainer.epochs=4", f"sweep.engine={engine}"]
    diverging = tmp_path / "diverging"
    result = train(make_cfg(*common, "sweep.lr=[0.5,1e38]", run_dir=diverging))
    runs = list(recorded_runs)
    train(make_cfg(*common, "sweep.lr=[0.5,0.7]", run_dir=tmp_path / "finite"))
    train(make_cfg(*common, "sweep.lr=[0.5]", run_dir=tmp_path / "without"))

    # Members 0 and 1 (lr 0.5) train exactly as beside a finite member, or without any.
    for index in (0, 1):
        for other in ("finite", "without"):
            assert_same_params(member_file(diverging, index, "params.safetensors"),
                               member_file(tmp_path / other, index, "params.safetensors"))
    # Members 2 and 3 diverged in epoch 1: frozen at their state before it, the initial one.
    for index, seed in ((2, 0), (3, 1)):
        frozen = load_params(member_file(diverging, index, "params.safetensors"))
        start = initial_params(seed, [2, 4, 1], "xavier", np.float32)
        assert all(np.array_equal(f[leaf], np.asarray(s[leaf]))
                   for f, s in zip(frozen, start) for leaf in ("W", "b"))

    finals = json.loads((diverging / "members.json").read_text())
    assert [(row["diverged"], row["diverged_epoch"]) for row in finals] == [
        (False, None), (False, None), (True, 1), (True, 1)
    ]
    summary = json.loads((diverging / "summary.json").read_text())
    assert summary["sweep/diverged"] == 2 and summary["sweep/best_lr"] == 0.5
    lr_05, lr_huge = summary["by_point"]
    assert (lr_huge["diverged"], lr_huge["diverged_epochs"]) == (2, [1, 1])
    assert lr_huge["val/best_loss/mean"] is None  # strict JSON: no NaN token
    # The objective is the best lr's mean over its finite members.
    assert result["val/best_loss"] == pytest.approx(lr_05["val/best_loss/mean"], rel=1e-12)
    assert result["val/best_loss"] == pytest.approx(
        np.mean([finals[0]["val/best_loss"], finals[1]["val/best_loss"]]), rel=1e-12)

    out = capsys.readouterr().out
    assert "member 2 (seed0-lr1e+38) diverged: loss became non-finite at epoch 1" in out
    assert re.search(r"lr=1e\+38 +n=2 +\(2 diverged at epoch 1, 1\)", out), out
    members, summary_run = runs[:4], runs[4]
    assert [run.exit_code for run in members] == [0, 0, 1, 1]  # diverged runs marked failed
    assert members[2].summary["diverged_epoch"] == 1
    assert [step for step, _ in members[2].steps] == [0]  # its initialization only
    assert summary_run.summary["sweep/diverged"] == 2


def test_a_w_and_b_failure_part_way_finishes_the_runs_already_open(make_cfg, monkeypatch):
    from conftest import RecordingLogger

    import deltaprop.run.tracker

    opened = []

    def make_logger(*args, **kwargs):
        if len(opened) == 2:
            raise RuntimeError("W&B is down")
        opened.append(RecordingLogger(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(deltaprop.run.tracker, "make_logger", make_logger)
    with pytest.raises(RuntimeError, match="W&B is down"):
        train(make_cfg("trainer.num_seeds=2", "sweep.lr=[0.5,1.0]"))
    assert [run.exit_code for run in opened] == [1, 1]


def test_a_sweep_without_a_finite_objective_says_so(make_cfg, tmp_path, capsys):
    """Three 0-labels of 100: the validation split holds only 1s, so val/auc is undefined."""
    path = tmp_path / "data.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{i % 7},{int(i < 97)}\n" for i in range(100)))
    result = train(make_cfg("dataset=csv", f"dataset.path={path}", "dataset.val_fraction=0.1",
                            "dataset.test_fraction=0.1", "trainer.num_seeds=2",
                            "objective=val/auc"))
    assert np.isnan(result["val/auc"]) and "sweep/best_lr" not in result
    assert "no learning rate has a finite mean val/auc" in capsys.readouterr().out


def test_every_member_diverged_fails_like_a_single_run(make_cfg, tmp_path):
    with pytest.raises(TrainingDiverged, match=r"every member diverged \(at epochs 1, 1\); "
                                               r"member 0: loss became non-finite at epoch 1"):
        train(make_cfg("trainer.num_seeds=2", "sweep.lr=[1e38]"))
    assert not (tmp_path / "run" / "members.csv").exists()
    for m in (0, 1):  # each member's evaluation at initialization is kept
        history = tmp_path / "run" / "members" / f"member_{m}" / "metrics.jsonl"
        assert [json.loads(line)["epoch"] for line in history.read_text().splitlines()] == [0]
