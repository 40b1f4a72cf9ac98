"""Vectorized sweeps: the packed pass equals the project's gradients, and every member of a
sweep equals the single run with its seed and learning rate."""

from __future__ import annotations

import csv
import itertools
import json
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import deltaprop.config  # noqa: F401  (registers the structured config schema)
from deltaprop import sweep, trainer
from deltaprop.backprop import manual_value_and_grad
from deltaprop.config import ConfigError
from deltaprop.diagnostics import roc_auc
from deltaprop.losses import loss_fn
from deltaprop.serialization import load_params
from deltaprop.training import make_optimizer

CONFIG_DIR = str(Path(__file__).parents[1] / "conf")

TINY = [
    "dataset.n_samples=120",
    "model.hidden=[4,3]",
    "trainer.batch_size=16",
    "trainer.epochs=3",
    "trainer.eval_every=2",
    "trainer.progress=false",
    "logger=none",
]


def make_config(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, *overrides])
    cfg.run_dir = str(tmp_path)
    return cfg


def random_members(seed, sizes, n_members, batch, dtype=jnp.float64):
    """Stacked params (M, ...) with nonzero biases, and one minibatch per member:
    x (M, N, n_1), y (M, N, n_L). NumPy draws them: nothing to compile."""
    rng = np.random.default_rng(seed)
    stacked = [
        {
            "W": jnp.asarray(rng.normal(size=(n_members, n_in, n_out)) / n_in**0.5, dtype),
            "b": jnp.asarray(rng.normal(size=(n_members, n_out)) * 0.3, dtype),
        }
        for n_in, n_out in itertools.pairwise(sizes)
    ]
    x = jnp.asarray(rng.normal(size=(n_members, batch, sizes[0])) * 3, dtype)
    y = jnp.asarray(rng.random((n_members, batch, sizes[-1])) < 0.5, dtype)
    return stacked, x, y


def to_packed_batch(array):
    """(M, N, n) → (N, n, M)."""
    return jnp.moveaxis(array, 0, -1)


def max_difference(tree_a, tree_b) -> float:
    return max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(tree_a), jax.tree.leaves(tree_b), strict=True)
    )


# ------------------------------------------------------------------------- the packed pass


def test_pack_and_unpack_move_the_member_axis():
    stacked, _, _ = random_members(0, [3, 5, 2], 4, 1)
    packed = sweep.pack(stacked)
    assert packed[0]["W"].shape == (3, 5, 4) and packed[0]["b"].shape == (5, 4)
    np.testing.assert_array_equal(packed[1]["W"][:, :, 2], stacked[1]["W"][2])
    assert max_difference(sweep.unpack(packed), stacked) == 0


@pytest.mark.parametrize("unroll_limit", [sweep.UNROLL_LIMIT, 0], ids=["unrolled", "einsum"])
def test_packed_backprop_matches_manual_grad_per_member(monkeypatch, unroll_limit):
    monkeypatch.setattr(sweep, "UNROLL_LIMIT", unroll_limit)
    stacked, x, y = random_members(1, [3, 6, 5, 2], n_members=4, batch=7)
    expected_loss, expected_grads = jax.jit(jax.vmap(manual_value_and_grad))(stacked, x, y)

    packed_backprop = jax.jit(sweep.packed_backprop)
    loss, grads = packed_backprop(sweep.pack(stacked), to_packed_batch(x), to_packed_batch(y))

    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13, atol=0)
    assert max_difference(sweep.unpack(grads), expected_grads) < 1e-13
    assert max_difference(expected_grads, jax.tree.map(jnp.zeros_like, expected_grads)) > 1e-3


def test_packed_autodiff_matches_jax_grad_of_loss_fn_per_member():
    stacked, x, y = random_members(2, [2, 4, 4, 1], n_members=3, batch=5)
    expected_loss, expected_grads = jax.jit(jax.vmap(jax.value_and_grad(loss_fn)))(stacked, x, y)

    value_and_grad = jax.jit(sweep.packed_value_and_grad_fn("autodiff"))
    loss, grads = value_and_grad(sweep.pack(stacked), to_packed_batch(x), to_packed_batch(y))

    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13, atol=0)
    assert max_difference(sweep.unpack(grads), expected_grads) < 1e-13


def test_packed_bf16_products_match_the_bf16_manual_pass():
    stacked, x, y = random_members(3, [3, 8, 1], n_members=2, batch=6, dtype=jnp.float32)
    expected = jax.jit(jax.vmap(lambda p, x, y: manual_value_and_grad(p, x, y, jnp.bfloat16)))(
        stacked, x, y
    )
    full_precision = jax.jit(jax.vmap(manual_value_and_grad))(stacked, x, y)
    got = jax.jit(lambda p, x, y: sweep.packed_backprop(p, x, y, jnp.bfloat16))(
        sweep.pack(stacked), to_packed_batch(x), to_packed_batch(y)
    )
    # bf16 operands are exact in float32 products; only the order of the sums differs.
    assert max_difference(sweep.unpack(got[1]), expected[1]) < 1e-6
    assert max_difference(full_precision[1], expected[1]) > 1e-5  # bf16 did change something


@pytest.mark.slow
def test_packed_engine_equals_vmap_engine_for_one_epoch_with_per_member_learning_rates():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["optimizer=adam"])
    members = [sweep.Member(0, 0, 0.01), sweep.Member(1, 1, 0.01), sweep.Member(2, 0, 0.2)]
    x = jnp.asarray(np.random.default_rng(4).normal(size=(40, 2)))
    y = (x[:, :1] * x[:, 1:] > 0).astype(jnp.float64)
    optimizer = make_optimizer(cfg.optimizer, steps_per_epoch=4, epochs=1)
    results = {}
    for name in sweep.ENGINES:
        engine = sweep.make_engine(name, optimizer, "manual", batch_size=10)
        state = sweep.init_sweep_state(engine, optimizer, members, [2, 5, 1], "xavier", jnp.float64)
        np.testing.assert_array_equal(
            state.opt_state.hyperparams["learning_rate"], [0.01, 0.01, 0.2]
        )
        epoch = jax.jit(engine.train_epoch)
        state, losses = epoch(state, x, y)
        state, losses = epoch(state, x, y)
        assert losses.shape == (3, 4)
        assert epoch._cache_size() == 1  # the second epoch did not recompile
        results[name] = (engine.member_params(state.params), losses)
    assert max_difference(results["packed"], results["vmap"]) < 1e-13
    # same seed, different lr: same start and data order, different end
    packed_params = results["packed"][0]
    assert max_difference(
        jax.tree.map(lambda a: a[0], packed_params), jax.tree.map(lambda a: a[2], packed_params)
    ) > 1e-3


@pytest.mark.parametrize("n", [1, 2, 7, 700, 1700, 5000])
def test_member_permutations_equal_jax_random_permutation(n):
    # 1700 and 5000 take two shuffle rounds; 5000 needs 13 index bits (the key-value sort path)
    keys = jax.random.split(jax.random.key(n), 5)
    expected = jax.vmap(lambda key: jax.random.permutation(key, n))(keys)
    got = jax.jit(sweep.member_permutations, static_argnums=1)(keys, n)
    np.testing.assert_array_equal(got, expected)


def equal_high_bits(rng, n_rows: int, n: int, run: int) -> np.ndarray:
    """Random uint32 rows where, in each row, `run` keys share their high 22 bits and have
    descending low bits (so index order is wrong for them), plus one exact tie."""
    bits = rng.integers(0, 2**32, (n_rows, n), dtype=np.uint64).astype(np.uint32)
    for row in bits:
        positions = rng.choice(n, run + 2, replace=False)
        high = row[positions[0]] & ~np.uint32(1023)
        row[positions[:run]] = high | np.arange(1000, 1000 - 7 * run, -7, dtype=np.uint32)
        row[positions[-1]] = row[positions[-2]]  # an exact tie: index order must stay
    return bits


@pytest.mark.parametrize("run", [2, 3, 5], ids=["pairs-fixed-in-place", "triples-fallback", "runs-of-5-fallback"])
def test_stable_argsort_rows_orders_equal_high_bits_and_ties_like_a_stable_sort(run):
    bits = equal_high_bits(np.random.default_rng(run), n_rows=8, n=600, run=run)
    got = jax.jit(sweep._stable_argsort_rows)(jnp.asarray(bits))
    np.testing.assert_array_equal(got, np.argsort(bits, axis=1, kind="stable"))


# -------------------------------------------------------------------- host-side metrics


def test_batched_roc_auc_equals_sklearn_with_ties_and_is_nan_for_one_class():
    rng = np.random.default_rng(0)
    y = (rng.random(50) < 0.4).astype(np.float64)[:, None]
    probabilities = np.round(rng.random((4, 50, 1)), 1)  # many ties
    expected = [roc_auc(y, p) for p in probabilities]
    np.testing.assert_allclose(sweep.batched_roc_auc(y, probabilities), expected, rtol=1e-12)
    assert np.isnan(sweep.batched_roc_auc(np.zeros((50, 1)), probabilities)).all()


def test_sweep_members_are_lr_major_with_consecutive_seeds(tmp_path):
    cfg = make_config(tmp_path, "seed=5", "trainer.num_seeds=2", "sweep.lr=[0.1,0.3]")
    members = sweep.sweep_members(cfg)
    assert [(m.index, m.seed, m.lr) for m in members] == [
        (0, 5, 0.1), (1, 6, 0.1), (2, 5, 0.3), (3, 6, 0.3)
    ]
    cfg = make_config(tmp_path, "trainer.num_seeds=3", "optimizer.lr=0.7")
    assert [(m.seed, m.lr) for m in sweep.sweep_members(cfg)] == [(0, 0.7), (1, 0.7), (2, 0.7)]


@pytest.mark.parametrize(
    "override, key",
    [
        ("trainer.checkpoint_every=2", "trainer.checkpoint_every"),
        ("trainer.data_parallel=true", "trainer.data_parallel"),
        ("trainer.resume=auto", "trainer.resume"),
    ],
)
def test_unsupported_options_fail_before_any_work(tmp_path, override, key):
    cfg = make_config(tmp_path / "run", "trainer.num_seeds=2", override)
    with pytest.raises(ConfigError, match=key):
        sweep.train_sweep(cfg)
    assert not (tmp_path / "run").exists()


def test_unknown_engine_is_a_config_error(tmp_path):
    cfg = make_config(tmp_path, "trainer.num_seeds=2")
    with pytest.raises(ConfigError, match="'blocked'"):
        sweep.train_sweep(cfg, engine="blocked")


# ---------------------------------------------------------------- end to end, in tmp_path


class RecordingLogger:
    """Stands in for make_logger's loggers: records what each run receives."""

    def __init__(
        self, runs, logger_cfg, config, run_dir, name=None, group=None, job_type="train"
    ):
        self.config, self.name, self.group, self.job_type = config, name, group, job_type
        self.steps, self.summary, self.images, self.tables = [], {}, {}, {}
        self.finished = None
        self.run_path = None
        runs.append(self)

    def log(self, metrics, step):
        self.steps.append((step, dict(metrics)))

    def log_images(self, images, step):
        self.images |= images

    def log_table(self, name, columns, rows):
        self.tables[name] = (columns, rows)

    def log_artifact(self, name, kind, path):
        pass

    def summarize(self, metrics):
        self.summary |= metrics

    def finish(self, exit_code=0):
        self.finished = exit_code


@pytest.mark.slow
def test_sweep_writes_every_member_and_logs_each_as_its_own_run(tmp_path, monkeypatch):
    runs: list[RecordingLogger] = []
    monkeypatch.setattr(sweep, "make_logger", partial(RecordingLogger, runs))
    cfg = make_config(
        tmp_path, "seed=3", "trainer.num_seeds=2", "sweep.lr=[0.5,2.0]", "logger.group=g1"
    )

    metrics = trainer.train(cfg)  # dispatches to train_sweep

    assert metrics["sweep/members"] == 4
    rows = list(csv.DictReader((tmp_path / "members.csv").read_text().splitlines()))
    assert [(int(r["seed"]), float(r["lr"])) for r in rows] == [
        (3, 0.5), (4, 0.5), (3, 2.0), (4, 2.0)
    ]
    members = json.loads((tmp_path / "members.json").read_text())
    for key in ("val/best_loss", "val/acc", "test/acc", "test/auc", "train/epoch_loss"):
        assert metrics[key] == pytest.approx(np.mean([m[key] for m in members]), rel=1e-12)
    assert metrics[cfg.objective] == metrics["val/best_loss"]
    assert len({m["val/best_loss"] for m in members}) == 4  # four different runs
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [row["lr"] for row in summary["by_lr"]] == [0.5, 2.0]
    assert (tmp_path / "sweep_curves.png").stat().st_size > 10_000
    for index in range(4):
        history = (tmp_path / "members" / f"member_{index}" / "metrics.jsonl").read_text()
        assert [json.loads(line)["epoch"] for line in history.splitlines()] == [2, 3]

    member_runs = [run for run in runs if run.job_type == "train"]
    (summary_run,) = [run for run in runs if run.job_type == "sweep-summary"]
    assert {run.group for run in runs} == {"g1"}
    assert [(r.config["seed"], r.config["optimizer"]["lr"], r.config["member"]) for r in
            member_runs] == [(3, 0.5, 0), (4, 0.5, 1), (3, 2.0, 2), (4, 2.0, 3)]
    assert all(run.config["data_seed"] == 3 for run in member_runs)
    assert [step for step, _ in member_runs[2].steps] == [2, 3]
    assert member_runs[2].summary["val/best_loss"] == members[2]["val/best_loss"]
    assert all(run.finished == 0 for run in runs)
    assert "plots/sweep_curves" in summary_run.images
    assert len(summary_run.tables["members"][1]) == 4
    assert summary_run.summary["sweep/members"] == 4


@pytest.mark.slow
def test_wandb_offline_gives_one_run_per_member_and_a_summary_run_in_one_group(tmp_path):
    import wandb

    cfg = make_config(
        tmp_path, "trainer.num_seeds=2", "trainer.epochs=2", "logger=wandb",
        "logger.mode=offline", "logger.project=deltaprop-test", "experiment_name=sweeptest",
    )
    sweep.train_sweep(cfg)
    wandb.teardown()  # flush the offline run files

    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 3
    records = [next(run.glob("run-*.wandb")).read_bytes() for run in runs]
    assert all(b"sweep-sweeptest-" in record for record in records)  # the generated group
    assert sum(b"sweep-summary" in record for record in records) == 1
    assert sum(b"seed1-lr1" in record for record in records) == 1  # member 1's run name


# ------------------------------------------------------- members equal single runs (f64)


def sweep_data_for_every_seed(monkeypatch, data_seed: int) -> None:
    """Make single runs use the sweep's shared split (drawn from cfg.seed of the sweep)."""
    prepare_data = trainer.prepare_data

    def shared(cfg):
        cfg = OmegaConf.merge(cfg, {"seed": data_seed})
        return prepare_data(cfg)

    monkeypatch.setattr(trainer, "prepare_data", shared)


@pytest.mark.slow
@pytest.mark.parametrize(
    "engine, grad, optimizer, checked",
    [
        ("packed", "manual", "sgd", [0, 1, 2, 3]),
        ("vmap", "manual", "sgd", [1, 2]),  # (seed 8, lr 0.05) and (seed 7, lr 0.4)
        ("packed", "autodiff", "adam", [0, 3]),
    ],
)
def test_each_member_equals_the_single_run_with_its_seed_and_lr(
    tmp_path, monkeypatch, engine, grad, optimizer, checked
):
    base = ["seed=7", "trainer.precision=float64", f"trainer.grad={grad}", f"optimizer={optimizer}"]
    learning_rates = [0.05, 0.4]
    cfg = make_config(
        tmp_path / "sweep", *base, "trainer.num_seeds=2", f"sweep.lr=[{learning_rates[0]},"
        f"{learning_rates[1]}]"
    )
    sweep_data_for_every_seed(monkeypatch, data_seed=7)
    sweep.train_sweep(cfg, engine=engine)

    for member in [sweep.sweep_members(cfg)[index] for index in checked]:
        single = make_config(
            tmp_path / f"single_{member.index}", *base, f"seed={member.seed}",
            f"optimizer.lr={member.lr}", "logger.log_gradcheck=false",
        )
        trainer.train(single)
        expected = load_params(tmp_path / f"single_{member.index}" / "params.safetensors")
        got = load_params(tmp_path / "sweep" / "members" / f"member_{member.index}"
                          / "params.safetensors")
        assert got[0]["W"].dtype == np.float64
        assert max_difference(got, expected) < 1e-10, member
        expected_summary = json.loads(
            (tmp_path / f"single_{member.index}" / "summary.json").read_text()
        )
        got_summary = json.loads(
            (tmp_path / "sweep" / "members" / f"member_{member.index}" / "summary.json").read_text()
        )
        for key in ("val/best_loss", "train/epoch_loss", "test/acc", "test/auc"):
            assert got_summary[key] == pytest.approx(expected_summary[key], rel=1e-9, abs=1e-12)
