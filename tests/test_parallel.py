"""Data parallelism (deltaprop.run.parallel, trainer.data_parallel / trainer.distributed), for
single runs and sweeps.

The test process has one CPU device, so anything with several devices runs in a subprocess:
XLA_FLAGS=--xla_force_host_platform_device_count=4 gives it four CPU devices, and two such
processes joined by jax.distributed make a two-host run on this machine.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import cli_env, max_param_difference

from deltaprop.io.files import load_params
from deltaprop.run import parallel

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")
# 200 samples: 140 training examples, 4 minibatches of 32 per epoch (8 per device on 4 devices).
TINY = [
    "logger=none",
    "logger.log_gradcheck=false",
    "logger.plots=false",
    "trainer.progress=false",
    "trainer.epochs=3",
    "trainer.eval_every=3",
    "dataset.n_samples=200",
]


def run_python(code: str, *args: str, env: dict[str, str], timeout: float = 600) -> dict:
    """Run `code` in a fresh interpreter; return the JSON it prints on its last line."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args], check=False, env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# Trains each run twice (data_parallel false / true), then inspects the compiled epoch.
FOUR_DEVICES = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from hydra import compose, initialize_config_dir
import deltaprop.run.config
from deltaprop.run import parallel
from deltaprop.run.train import train
from deltaprop.training import init_train_state, make_optimizer, make_train_epoch, value_and_grad_fn
from deltaprop.network import init_params
from deltaprop.settings import OptimizerSettings

conf, out, tiny = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
runs, SHARD = json.loads(sys.argv[4]), json.loads(sys.argv[5])
report = {"device_count": jax.device_count()}
# Only the runs on several devices: their one-device twins train in the test process.
with initialize_config_dir(config_dir=conf, version_base="1.3"):
    for kind, overrides in runs.items():
        cfg = compose("config", overrides=tiny + overrides + [
            "trainer.data_parallel=true", f"run_dir={out}/{kind}_True"])
        report[f"{kind}_True"] = train(cfg)["val/best_loss"]
    for engine in ("packed", "vmap"):
        cfg = compose("config", overrides=tiny + SHARD + [
            f"sweep.engine={engine}", "sweep.shard_members=true",
            f"run_dir={out}/shard_{engine}_True"])
        report[f"shard_{engine}_True"] = train(cfg)["val/best_loss"]
    from deltaprop.run.config import read
    from deltaprop.run.engines import make_engine
    from deltaprop.run.setup import RunSetup
    cfg = compose("config", overrides=tiny + SHARD + ["sweep.shard_members=true",
                                                      f"run_dir={out}/shard_inspect"])
    setup = RunSetup.create(read(cfg).training())
    engine = make_engine(setup.engine)
    state = engine.place_state(engine.init(setup.members))
    report["member_shards"] = [list(s.data.shape) for s in state.params[0]["W"].addressable_shards]
    report["hlo_members"] = engine.epoch.lower(
        state, setup.arrays["x_train"], setup.arrays["y_train"]).compile().as_text()
    cfg = compose("config", overrides=tiny + ["trainer.num_seeds=3", "sweep.shard_members=true",
                                              f"run_dir={out}/bad_shard"])
    try:
        train(cfg)
        report["indivisible_members"] = None
    except ValueError as error:
        report["indivisible_members"] = str(error)
    cfg = compose("config", overrides=tiny + ["trainer.data_parallel=true",
                                              "trainer.batch_size=30", f"run_dir={out}/bad"])
    try:
        train(cfg)
        report["indivisible_error"] = None
    except ValueError as error:
        report["indivisible_error"] = str(error)

# The compiled epoch: a (32, 2) batch split 4 ways, and the gradient sums all-reduced.
mesh = parallel.data_mesh()
sharding = parallel.batch_sharding(mesh)
x = jnp.ones((140, 2), jnp.float32)
y = jnp.ones((140, 1), jnp.float32)
optimizer = make_optimizer(OptimizerSettings(name="sgd", lr=1.0), 4, 1)
params = init_params(jax.random.key(0), [2, 16, 16, 1], "xavier", jnp.float32)
state = parallel.replicate(init_train_state(params, optimizer, jax.random.key(1)), mesh)
x, y = parallel.replicate((x, y), mesh)
for label, batch_sharding in (("sharded", sharding), ("unsharded", None)):
    epoch = jax.jit(make_train_epoch(optimizer, value_and_grad_fn(), 32, batch_sharding))
    report[f"hlo_{label}"] = epoch.lower(state, x, y).compile().as_text()
batch = jax.device_put(jnp.ones((32, 2)), sharding)
report["shard_shapes"] = [list(shard.data.shape) for shard in batch.addressable_shards]
report["shard_devices"] = len({shard.device for shard in batch.addressable_shards})
report["replicated"] = all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(state))
print(json.dumps(report))
"""


SWEEP = ["trainer.num_seeds=2", "sweep.lr=[0.5,1.0]", "trainer.precision=float64"]
RUNS = {"float32": ["trainer.precision=float32"], "float64": ["trainer.precision=float64"],
        "packed": [*SWEEP, "sweep.engine=packed"], "vmap": [*SWEEP, "sweep.engine=vmap"]}
SHARD = ["trainer.num_seeds=4", "sweep.lr=[0.5,1.0]", "trainer.precision=float64",
         "sweep.member_chunk=1"]  # 8 members, 2 per device, in chunks of 1


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    """The runs on four CPU devices (a process of their own), and their one-device twins
    trained here while it works."""
    from conftest import compose_config

    from deltaprop.run.train import train

    out = tmp_path_factory.mktemp("four_devices")
    process = subprocess.Popen(
        [sys.executable, "-c", FOUR_DEVICES, CONF, str(out), json.dumps(TINY),
         json.dumps(RUNS), json.dumps(SHARD)], env=cli_env(devices=4), cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    report = {}
    for kind, overrides in RUNS.items():
        report[f"{kind}_False"] = train(compose_config(*TINY, *overrides,
                                                       f"run_dir={out / f'{kind}_False'}"))[
            "val/best_loss"]
    for engine in ("packed", "vmap"):
        report[f"shard_{engine}_False"] = train(compose_config(
            *TINY, *SHARD, f"sweep.engine={engine}", f"run_dir={out / f'shard_{engine}_False'}"))[
            "val/best_loss"]
    stdout, stderr = process.communicate(timeout=600)  # a hang guard: it takes ~40 s
    assert process.returncode == 0, stderr[-3000:]
    return report | json.loads(stdout.strip().splitlines()[-1]), out


@pytest.mark.slow
def test_four_cpu_devices_shard_the_batch_and_all_reduce(four_devices):
    report, _ = four_devices
    assert report["device_count"] == 4
    assert report["shard_shapes"] == [[8, 2]] * 4  # 32 examples → 8 on each device
    assert report["shard_devices"] == 4
    assert report["replicated"]
    assert "all-reduce" in report["hlo_sharded"]
    assert "all-reduce" not in report["hlo_unsharded"]


@pytest.mark.slow
@pytest.mark.parametrize(("precision", "tolerance", "dtype"), [
    ("float32", 1e-6, np.float32),
    ("float64", 1e-12, np.float64),
])
def test_data_parallel_equals_single_device(four_devices, precision, tolerance, dtype):
    report, out = four_devices
    single = out / f"{precision}_False" / "params.safetensors"
    sharded = out / f"{precision}_True" / "params.safetensors"
    assert load_params(sharded)[0]["W"].dtype == dtype
    assert max_param_difference(single, sharded) <= tolerance
    assert report[f"{precision}_True"] == pytest.approx(report[f"{precision}_False"], abs=tolerance)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["packed", "vmap"])
def test_data_parallel_sweep_equals_the_one_device_sweep(four_devices, engine):
    report, out = four_devices
    for member in range(4):
        name = f"members/member_{member}/params.safetensors"
        assert max_param_difference(out / f"{engine}_False" / name,
                                    out / f"{engine}_True" / name) <= 1e-12
    assert report[f"{engine}_True"] == pytest.approx(report[f"{engine}_False"], abs=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["packed", "vmap"])
def test_members_sharded_over_devices_equal_the_one_device_sweep(four_devices, engine):
    report, out = four_devices
    for member in range(8):
        name = f"members/member_{member}/params.safetensors"
        assert max_param_difference(out / f"shard_{engine}_False" / name,
                                    out / f"shard_{engine}_True" / name) <= 1e-12
    assert report[f"shard_{engine}_True"] == pytest.approx(report[f"shard_{engine}_False"],
                                                           abs=1e-12)


@pytest.mark.slow
def test_each_device_trains_its_block_of_members_without_communication(four_devices):
    report, out = four_devices
    assert report["member_shards"] == [[2, 16, 2]] * 4  # W_2 (n_in, n_out, M): 2 members each
    for collective in ("all-reduce", "all-gather", "all-to-all", "collective-permute"):
        assert collective not in report["hlo_members"], collective
    message = report["indivisible_members"]
    assert "3 members over 4 devices" in message and "multiple of 4" in message
    assert not (out / "bad_shard" / "summary.json").exists()


@pytest.mark.slow
def test_batch_size_not_divisible_by_devices_is_a_clear_error(four_devices):
    report, out = four_devices
    message = report["indivisible_error"]
    assert message is not None
    assert "trainer.batch_size=30" in message
    assert "4 devices" in message
    assert "28 or 32" in message
    assert not (out / "bad" / "summary.json").exists()


def test_check_divisible_names_the_clipped_batch():
    class FourDeviceMesh:  # check_divisible reads only the device count
        devices = np.empty(4)

    parallel.check_divisible(64, 1000, FourDeviceMesh())
    parallel.check_divisible(1000, 140, FourDeviceMesh())  # the batch is the 140 examples
    with pytest.raises(ValueError, match=r"clipped to the 142 training examples.*140 or 144"):
        parallel.check_divisible(1000, 142, FourDeviceMesh())
    with pytest.raises(ValueError, match=r"batch_size=4$"):
        parallel.check_divisible(2, 1000, FourDeviceMesh())


def test_replicate_puts_every_leaf_on_every_device():
    mesh = parallel.data_mesh()
    tree = {"W": jnp.arange(6.0).reshape(2, 3), "key": jax.random.key(3)}
    placed = parallel.replicate(tree, mesh)
    assert all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(placed))
    np.testing.assert_array_equal(placed["W"], tree["W"])
    np.testing.assert_array_equal(
        jax.random.key_data(placed["key"]), jax.random.key_data(tree["key"])
    )
    assert parallel.batch_sharding(mesh).spec == jax.sharding.PartitionSpec(parallel.DATA_AXIS)


def test_malformed_process_count_is_a_clear_error():
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES='two' must be an integer"):
        parallel.initialize_distributed({"JAX_COORDINATOR_ADDRESS": "localhost:1",
                                         "JAX_NUM_PROCESSES": "two"})


def test_distributed_without_a_cluster_is_a_clear_error():
    code = "from deltaprop.run import parallel; parallel.initialize_distributed()"
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, env=cli_env(), cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "trainer.distributed=true could not start the distributed runtime" in done.stderr
    assert "JAX_COORDINATOR_ADDRESS=host:port" in done.stderr


# One training run with the overrides in argv; prints what this process saw.
TRAIN = r"""
import json, sys
import jax
from hydra import compose, initialize_config_dir
import deltaprop.run.config
from deltaprop.run.train import train

conf, overrides = sys.argv[1], json.loads(sys.argv[2])
with initialize_config_dir(config_dir=conf, version_base="1.3"):
    metrics = train(compose("config", overrides=overrides))
print(json.dumps({"process_index": jax.process_index(), "process_count": jax.process_count(),
                  "device_count": jax.device_count(), "local": jax.local_device_count(),
                  "best": metrics["val/best_loss"]}))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_with_two_devices_each_equal_one_device(tmp_path):
    """trainer.distributed=true: two "hosts" on localhost, 4 devices in one mesh."""
    address = f"localhost:{free_port()}"
    distributed = ["trainer.distributed=true", "trainer.data_parallel=true"]
    runs = {  # name: (environment, overrides); the single-device baseline runs alongside
        "single": (cli_env(), TINY + [f"run_dir={tmp_path / 'single'}"]),
    }
    for process_id in range(2):
        env = cli_env(
            devices=2, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2",
            JAX_PROCESS_ID=str(process_id),
        )
        overrides = TINY + distributed + [f"run_dir={tmp_path / f'process{process_id}'}"]
        runs[f"process{process_id}"] = (env, overrides)
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-c", TRAIN, CONF, json.dumps(overrides)], env=env, cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name, (env, overrides) in runs.items()
    }
    reports = {}
    try:
        for name, process in processes.items():
            stdout, stderr = process.communicate(timeout=600)
            assert process.returncode == 0, f"{name}: {stderr[-3000:]}"
            reports[name] = json.loads(stdout.strip().splitlines()[-1])
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    assert (reports["single"]["process_count"], reports["single"]["device_count"]) == (1, 1)
    single = tmp_path / "single" / "params.safetensors"
    for process_id in range(2):
        report = reports[f"process{process_id}"]
        assert report["process_index"] == process_id
        assert (report["process_count"], report["device_count"], report["local"]) == (2, 4, 2)
        assert report["best"] == pytest.approx(reports["single"]["best"], abs=1e-6)
    # Only process 0 writes the run directory; process 1 trains the same model and writes nothing.
    assert max_param_difference(single, tmp_path / "process0" / "params.safetensors") <= 1e-6
    assert not (tmp_path / "process1" / "params.safetensors").exists()
    assert not (tmp_path / "process1" / "summary.json").exists()
