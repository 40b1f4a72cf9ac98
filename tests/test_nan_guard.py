"""Tests for the NaN/inf guard of trainer.train: stop, name epoch and layer, keep checkpoints."""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import deltaprop.config  # noqa: F401  (registers the structured config schema)
from deltaprop import checkpointing, trainer
from deltaprop.tracking import NullLogger
from deltaprop.trainer import (
    TrainingDiverged,
    all_finite,
    divergence_message,
    first_non_finite_parameter,
    first_non_finite_pre_activation,
    train,
)

CONF = str(Path(__file__).parents[1] / "conf")

# lr·weight_decay = 1000: θ ← θ − η(g + λθ) multiplies θ by about −999 per step, so the weights
# overflow float32 within a few epochs (4 steps each).
EXPLODING = [
    "logger=none",
    "logger.log_gradcheck=false",
    "trainer.progress=false",
    "dataset.n_samples=200",
    "model.hidden=[4]",
    "trainer.epochs=10",
    "optimizer.weight_decay=1e3",
]


def make_cfg(run_dir: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=[*EXPLODING, f"run_dir={run_dir}", *overrides])


def tiny_params(dtype=jnp.float32):
    return [
        {"W": jnp.ones((2, 3), dtype), "b": jnp.zeros((3,), dtype)},
        {"W": jnp.ones((3, 1), dtype), "b": jnp.zeros((1,), dtype)},
    ]


class RecordingLogger(NullLogger):
    def __init__(self):
        self.exit_codes: list[int] = []
        self.logged_steps: list[int] = []

    def log(self, metrics, step):
        self.logged_steps.append(step)

    def finish(self, exit_code: int = 0) -> None:
        self.exit_codes.append(exit_code)


# ---------------------------------------------------------------- the pieces


def test_all_finite():
    params = tiny_params()
    losses = jnp.array([0.5, 0.4], jnp.float32)
    assert bool(all_finite(losses, params))
    assert not bool(all_finite(losses.at[1].set(jnp.inf), params))
    params[1]["b"] = params[1]["b"].at[0].set(jnp.nan)
    assert not bool(all_finite(losses, params))


def test_first_non_finite_parameter_in_layer_order():
    params = tiny_params()
    assert first_non_finite_parameter(params) is None
    params[1]["b"] = params[1]["b"].at[0].set(jnp.nan)
    assert first_non_finite_parameter(params) == "layer 3 b"
    params[0]["W"] = params[0]["W"].at[1, 2].set(-jnp.inf)
    assert first_non_finite_parameter(params) == "layer 2 W"


def test_message_names_epoch_and_layer():
    params = tiny_params()
    params[0]["W"] = params[0]["W"].at[0, 0].set(jnp.nan)
    losses = jnp.array([0.3, jnp.nan], jnp.float32)
    assert divergence_message(3, losses, params) == (
        "loss became non-finite at epoch 3; first non-finite parameter: layer 2 W"
    )
    finite_losses = jnp.array([0.3, 0.2], jnp.float32)
    assert divergence_message(5, finite_losses, params).startswith(
        "parameters became non-finite at epoch 5; first non-finite parameter: layer 2 W"
    )


def test_overflowing_pre_activation_is_named_when_parameters_are_finite():
    params = tiny_params()
    params[1]["W"] = params[1]["W"] * 3e38  # finite, but a_2 W_3 sums three of them: inf
    x = jnp.ones((4, 2), jnp.float32)
    assert first_non_finite_pre_activation(params, x) == "layer 3 z"
    message = divergence_message(2, jnp.array([jnp.inf], jnp.float32), params, x)
    assert message == (
        "loss became non-finite at epoch 2; all parameters are still finite, but the weights "
        "are so large that the first overflow is at layer 3 z"
    )


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
def test_divergence_stops_training_keeps_good_checkpoints_and_fails_the_run(
    tmp_path, monkeypatch
):
    recorder = RecordingLogger()
    monkeypatch.setattr(trainer, "make_logger", lambda *args, **kwargs: recorder)
    run_dir = tmp_path / "run"
    cfg = make_cfg(run_dir, "trainer.checkpoint_every=1", "trainer.keep_checkpoints=20",
                   "trainer.eval_every=1")
    with pytest.raises(TrainingDiverged) as error:
        train(cfg)
    message = str(error.value)
    match = re.match(r"(loss|parameters) became non-finite at epoch (\d+); "
                     r"first non-finite parameter: layer 2 W; last good checkpoint: ", message)
    assert match, message
    epoch = int(match.group(2))
    assert 1 < epoch < 10
    assert isinstance(error.value, RuntimeError)

    root = run_dir / "checkpoints"
    assert checkpointing.complete_steps(root) == list(range(1, epoch))  # the bad state not saved
    assert f"{root / str(epoch - 1)} (epoch {epoch - 1})" in message
    assert recorder.exit_codes == [1]  # the W&B run is marked failed
    assert recorder.logged_steps == list(range(1, epoch))  # the bad epoch is not evaluated
    assert not (run_dir / "params.safetensors").exists()

    # The last good checkpoint loads, and holds finite parameters.
    init_state = trainer.init_train_state(
        trainer.init_params(jax.random.key(0), [2, 4, 1], "xavier", jnp.float32),
        trainer.make_optimizer(cfg.optimizer, 4, 10),
        jax.random.key(1),
    )
    state, progress = checkpointing.restore_checkpoint(
        checkpointing.CheckpointRef(root, epoch - 1), init_state,
        checkpointing.read_metadata(checkpointing.CheckpointRef(root, epoch - 1)),
    )
    assert int(state.epoch) == epoch - 1
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(state.params))
    assert [row["epoch"] for row in progress.history] == list(range(1, epoch))


def test_divergence_without_checkpoints_says_so(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"at epoch \d+; .*no checkpoint to go back to "
                                               r"\(trainer.checkpoint_every=0\)"):
        train(make_cfg(tmp_path / "run"))


def test_huge_learning_rate_overflows_the_loss(tmp_path):
    """The weights stay finite, but the mean loss over the training split overflows float32."""
    cfg = make_cfg(tmp_path / "run", "optimizer.weight_decay=0", "optimizer.lr=1e37",
                   "trainer.eval_every=1")
    with pytest.raises(TrainingDiverged, match=r"loss became non-finite at epoch \d+; all "
                                               r"parameters are still finite"):
        train(cfg)


@pytest.mark.slow
def test_debug_nans_names_the_operation_and_is_scoped(tmp_path):
    with pytest.raises(TrainingDiverged) as error:
        train(make_cfg(tmp_path / "run", "trainer.debug_nans=true"))
    message = str(error.value)
    assert re.match(r"NaN at epoch \d+ \(trainer.debug_nans\): invalid value \(nan\) "
                    r"encountered in \w+ at \w+\.py:\d+: ", message), message
    assert isinstance(error.value.__cause__, FloatingPointError)
    assert not jax.config.jax_debug_nans  # restored after the run
