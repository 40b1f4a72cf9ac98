"""The debug presets (conf/debug/), trainer.limit_batches, and what a run says at its start: the
config tree, the JAX backend and devices (also in the W&B config), W&B system metrics, and a
progress line per evaluation when stderr is not a terminal."""

from __future__ import annotations

import json

import jax
import numpy as np
import optax
import pytest
from conftest import compose_config, draw_problem

import deltaprop
from deltaprop.backprop import manual_value_and_grad
from deltaprop.training import (
    _shuffled_order,
    init_train_state,
    make_train_epoch,
    make_train_step,
)


def history(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_limit_batches_stops_the_epoch_after_k_minibatches():
    params, x, y = draw_problem(0, (2, 4, 1), 64)
    optimizer = optax.sgd(0.5)
    state = init_train_state(params, optimizer, jax.random.key(3))
    epoch = jax.jit(make_train_epoch(optimizer, manual_value_and_grad, 8, limit_batches=2))
    new, losses = epoch(state, x, y)
    assert losses.shape == (2,)  # 2 of the 8 minibatches
    _, order = _shuffled_order(state.key, 64, 2, 8)  # the same shuffle, two steps by hand
    step, expected, opt_state = make_train_step(optimizer, manual_value_and_grad), params, \
        state.opt_state
    for rows in order:
        expected, opt_state, _ = step(expected, opt_state, x[rows], y[rows])
    for got, want in zip(jax.tree.leaves(new.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_debug_fast_trains_one_short_epoch_without_wandb(make_cfg, tmp_path):
    cfg = make_cfg("debug=fast", "trainer.progress=false", "dataset.n_samples=400",
                   small=False)
    assert (cfg.trainer.epochs, cfg.trainer.limit_batches, cfg.logger.backend) == (1, 4, "none")
    deltaprop.train(cfg)
    initial, row = history(tmp_path / "run")
    assert (initial["epoch"], row["epoch"]) == (0, 1)
    assert not (tmp_path / "run" / "wandb").exists()


def test_debug_overfit_drives_the_training_loss_to_zero(make_cfg, tmp_path):
    cfg = make_cfg("debug=overfit", "trainer.progress=false", "dataset.n_samples=400",
                   small=False)
    metrics = deltaprop.train(cfg)
    assert metrics["train/loss"] < 0.05 and metrics["train/acc"] == 1.0  # from ln 2 = 0.69
    assert metrics["val/loss"] > 10 * metrics["train/loss"]  # memorized, not generalized


def test_debug_profile_writes_a_trace_of_the_first_epochs(make_cfg, tmp_path, capsys):
    deltaprop.train(make_cfg("debug=profile"))
    traces = list((tmp_path / "run" / "profile").rglob("*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0
    assert "profile of epochs 1-3" in capsys.readouterr().out


def test_debug_nans_turns_on_jax_debug_nans():
    assert compose_config("debug=nans").trainer.debug_nans is True


def test_a_run_shows_its_config_device_and_progress(make_cfg, capsys):
    deltaprop.train(make_cfg("trainer.progress=true", "print_config=true"))
    out = capsys.readouterr().out
    assert "config\n├── model" in out and "│   ├── hidden: [4]" in out
    assert f"JAX {jax.__version__} on cpu: 1 device (cpu)" in out
    # stderr is not a terminal here: a line per evaluation (epoch 0, eval_every=2, 3 epochs)
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("epoch ")] == \
        ["epoch 0/3", "epoch 2/3", "epoch 3/3"]
    deltaprop.train(make_cfg("print_config=false", "run_dir_exists=overwrite"))
    assert "├── model" not in capsys.readouterr().out


@pytest.mark.parametrize("sweep", [False, True], ids=["single", "sweep"])
def test_wandb_runs_get_the_device_and_system_metrics(make_cfg, recorded_runs, sweep):
    deltaprop.train(make_cfg("logger=wandb", *(["trainer.num_seeds=2"] if sweep else [])))
    assert all(run.config["jax"]["backend"] == jax.default_backend() for run in recorded_runs)
    assert all(run.config["jax"]["device_count"] == len(jax.devices()) for run in recorded_runs)
    # One set of machine charts per run: a sweep's member runs leave them to its summary run.
    charts = [run.system_metrics for run in recorded_runs]
    assert charts == ([False, False, True] if sweep else [True])


def test_limit_batches_reaches_every_engine(make_cfg):
    """Member 0 of a packed sweep equals the single run with the same limit, not the full one."""
    from deltaprop.run.config import read
    from deltaprop.run.engines import make_engine
    from deltaprop.run.setup import RunSetup

    def first_epoch(*overrides):
        setup = RunSetup.create(read(make_cfg("trainer.precision=float64", *overrides)).training())
        engine = make_engine(setup.engine)
        state, _, _ = engine.epoch(engine.init(setup.members), setup.arrays["x_train"],
                                   setup.arrays["y_train"])
        params = engine.member_params(jax.device_get(state.params))
        return np.concatenate([np.asarray(leaf)[0].ravel() for leaf in jax.tree.leaves(params)])

    limited = first_epoch("trainer.limit_batches=2")
    np.testing.assert_allclose(first_epoch("trainer.limit_batches=2", "trainer.num_seeds=2"),
                               limited, rtol=1e-10, atol=1e-12)
    assert np.max(np.abs(first_epoch() - limited)) > 1e-3
