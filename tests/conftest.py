"""Shared test settings and fixtures.

Settings: float64 available everywhere (set before any array exists; tests that want float32 ask
for it with dtype=jnp.float32), W&B offline, and one persistent XLA cache kept between test runs
in one place (~/.cache/deltaprop/xla-tests, or $DELTAPROP_TEST_XLA_CACHE), its oldest entries
evicted past 1 GB, programs compiled at XLA's lowest backend optimization level (the commands
the tests start keep XLA's defaults); configs composed once per session and copied per test; the
slow tests collected first.

Helpers (import them: `from conftest import draw_problem`):
    draw_problem     (seed, sizes, n, ...) -> (params, x, y), a random problem
    compose_config   (*overrides, config_name=...) -> a command's config composed (cached, copied)
    cli_env          the environment of a command-line test (CPU, W&B offline, no cluster)
    assert_same_params, max_param_difference   parameter files compared

Fixtures:
    checkpointed_run, checkpointed_sweep   finished runs shared by the session (copy to change)
    make_cfg         (*overrides, run_dir=..., small=True) -> a composed config on tmp_path
    recorded_runs    the W&B runs a training run opens, as RecordingLoggers (make_logger replaced)
    run_command      (command, *args) -> Completed: a console command run in this process
                     (run_in_process, for module-scoped fixtures)
    run_cli          (script, *args, ...) -> the CompletedProcess of `python experiments/<script>`
    batch, example   the textbook's five-layer network on four examples, and its worked example
"""

import copy
import functools
import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_START_METHOD", "thread")
# One persistent XLA cache, kept between test runs and inherited by the subprocesses the tests
# start: the same small programs are compiled by many tests and every run (io/xla_cache.py).
# JAX evicts the least recently used entries past the size given.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ.get(
    "DELTAPROP_TEST_XLA_CACHE", str(Path("~/.cache/deltaprop/xla-tests").expanduser())))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(1024**3))
# Hundreds of tiny programs, each compiled once: XLA's CPU backend at its lowest optimization
# level compiles them about a third faster (the whole suite from an empty cache on 2 cores:
# 9 min 27 s -> 7 min 52 s) and runs them as fast at these sizes. Results stay IEEE either way
# (no fast math), but the last digit may differ: the commands and the notebook kernel the tests
# start (cli_env, test_notebook) keep XLA's defaults, as a user's do.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join(
        [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]).strip()

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import deltaprop
import deltaprop.run.config
from deltaprop.io.console import console_output
from deltaprop.io.files import load_params
from deltaprop.io.tracking import NullLogger

ROOT = Path(__file__).parents[1]
CONF = ROOT / "conf"
EXPERIMENTS = ROOT / "experiments"
CLUSTER_VARIABLES = ("SLURM_", "OMPI_", "PMI_", "JAX_COORDINATOR", "JAX_NUM_PROCESSES",
                     "JAX_PROCESS_ID", "XLA_FLAGS")

# A run that takes a second: tiny data and network, few epochs, no W&B, no progress bar, no
# figures (tests that check them turn them on).
SMALL = [
    "logger=none",
    "logger.log_gradcheck=false",
    "logger.plots=false",
    "trainer.progress=false",
    "dataset.n_samples=120",
    "model.hidden=[4]",
    "trainer.batch_size=16",
    "trainer.epochs=3",
    "trainer.eval_every=2",
]


def compose_config(*overrides: str, return_hydra_config: bool = False,
                   config_name: str = "config"):
    """conf/<config_name>.yaml composed with `overrides`, as the command would (config: train,
    gradcheck, worked_example, ... each command's primary config). Composed once per session
    for the same arguments; each call gets its own copy."""
    return copy.deepcopy(_composed(overrides, return_hydra_config, config_name))


@functools.cache
def _composed(overrides: tuple[str, ...], return_hydra_config: bool, config_name: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name, overrides=list(overrides),
                       return_hydra_config=return_hydra_config)


def compose_experiment(experiment: str, *overrides: str):
    """conf/experiment/<experiment>.yaml composed by the command it belongs to (the worked
    example's by its config, ...; a training experiment by conf/config.yaml)."""
    from deltaprop.run.config import experiment_owner

    owner = experiment_owner(CONF / "experiment" / f"{experiment}.yaml")
    return compose_config(f"experiment={experiment}", *overrides,
                          config_name="config" if owner is None else owner.config)


@pytest.fixture(autouse=True)
def console_lines():
    """What the `deltaprop` loggers say reaches stdout (capsys), as in a notebook."""
    with console_output():
        yield


@pytest.fixture
def make_cfg(tmp_path):
    """(*overrides, run_dir=tmp_path / "run", small=True) -> a composed config; `small` puts
    SMALL first."""

    def make(*overrides: str, run_dir: Path | None = None, small: bool = True,
             config_name: str = "config"):
        run_dir = tmp_path / "run" if run_dir is None else run_dir
        return compose_config(*(SMALL if small else []), f"run_dir={run_dir}", *overrides,
                              config_name=config_name)

    return make


def draw_problem(seed, sizes, n, dtype=np.float64, bias_scale=0.1, as_numpy=False):
    """Xavier-uniform W, Gaussian b (std bias_scale), Gaussian x and 0/1 y: jax arrays of
    `dtype`, or writable NumPy arrays (drawn with NumPy: eager jax.random would compile per
    shape)."""
    rng = np.random.default_rng(seed)
    array = (lambda a: np.array(a, dtype)) if as_numpy else (lambda a: jnp.asarray(a, dtype))
    params = []
    for n_in, n_out in itertools.pairwise(sizes):
        limit = np.sqrt(6.0 / (n_in + n_out))
        params.append({
            "W": array(rng.uniform(-limit, limit, (n_in, n_out))),
            "b": array(bias_scale * rng.normal(size=n_out)),
        })
    x = array(rng.normal(size=(n, sizes[0])))
    y = array(rng.integers(0, 2, size=(n, sizes[-1])))
    return params, x, y


class RecordingLogger(NullLogger):
    """Stands in for a W&B run: records what it receives."""

    def __init__(self, logger_cfg=None, config=None, run_dir=None, name=None, group=None,
                 resume_id=None, job_type="train", system_metrics=True, console=False):
        self.console = console
        self.config, self.name, self.group, self.job_type = config, name, group, job_type
        self.system_metrics = system_metrics
        self.resume_id = resume_id
        self.run_id = resume_id or f"run-{id(self):x}"
        self.steps, self.summary, self.images, self.tables, self.artifacts = [], {}, {}, {}, []
        self.aliases = {}
        self.exit_code = None

    def log(self, metrics, step):
        self.steps.append((step, dict(metrics)))

    def log_images(self, images, step):
        self.images |= images

    def log_table(self, name, columns, rows):
        self.tables[name] = (columns, rows)

    def log_artifact(self, name, kind, path, aliases=(), metadata=None):
        self.artifacts.append(name)
        self.aliases[name] = list(aliases)

    def summarize(self, metrics):
        self.summary |= metrics

    def finish(self, exit_code=0):
        if self.exit_code is None:
            self.exit_code = exit_code


@pytest.fixture
def recorded_runs(monkeypatch):
    """Every W&B run the next training runs open, in order of opening."""
    import deltaprop.run.tracker

    runs: list[RecordingLogger] = []

    def make_logger(*args, **kwargs):
        runs.append(RecordingLogger(*args, **kwargs))
        return runs[-1]

    monkeypatch.setattr(deltaprop.run.tracker, "make_logger", make_logger)
    return runs


CHECKPOINTED = [*SMALL, "trainer.epochs=2", "trainer.checkpoint_every=2"]
SWEEP = ["trainer.num_seeds=2", "sweep.lr=[0.5,1.0]"]  # four members


@pytest.fixture(scope="session")
def checkpointed_run(tmp_path_factory) -> Path:
    """A finished single run of CHECKPOINTED (two epochs, checkpointed at the end), shared by
    the session: read it, or copy it before changing anything in it."""
    run_dir = tmp_path_factory.mktemp("checkpointed_run") / "run"
    deltaprop.train(compose_config(*CHECKPOINTED, f"run_dir={run_dir}"))
    return run_dir


@pytest.fixture(scope="session")
def checkpointed_sweep(tmp_path_factory) -> Path:
    """The same as a SWEEP of four members, shared likewise."""
    run_dir = tmp_path_factory.mktemp("checkpointed_sweep") / "run"
    deltaprop.train(compose_config(*CHECKPOINTED, *SWEEP, f"run_dir={run_dir}"))
    return run_dir


WORKED_SIZES = (2, 3, 3, 3, 1)  # the textbook's five layers
WORKED_LEARNING_RATE = 0.5


@pytest.fixture(scope="session")
def batch():
    """A batch of four examples for the textbook's five-layer network, float64."""
    from deltaprop.network import init_params

    with jax.enable_x64(True):
        params = init_params(jax.random.key(0), WORKED_SIZES, "xavier", jnp.float64)
        x = jax.random.normal(jax.random.key(1), (4, 2), jnp.float64)
    return params, x, jnp.array([[1.0], [0.0], [0.0], [1.0]], jnp.float64)


@pytest.fixture(scope="session")
def example(batch):
    """The worked example of `batch` at η = WORKED_LEARNING_RATE."""
    from deltaprop.teaching.worked_example import worked_example

    return worked_example(*batch, learning_rate=WORKED_LEARNING_RATE)


def cli_env(devices: int = 1, **extra: str) -> dict[str, str]:
    """This environment without cluster settings, on the CPU with `devices` devices."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLUSTER_VARIABLES)}
    env |= {"JAX_PLATFORMS": "cpu", "WANDB_MODE": "offline", **extra}
    scripts = str(Path(sys.executable).parent)  # deltaprop-train and the other commands
    env["PATH"] = os.pathsep.join([scripts, env.get("PATH", "")])
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


class Completed(NamedTuple):
    """What a command run in this process left: its exit code and its console output."""

    returncode: int
    stdout: str
    stderr: str


def run_in_process(command: str, *args: str, cwd: Path | None = None) -> Completed:
    """`deltaprop-<command> args...` run in this process: the same Hydra app, checks and exit
    codes, without a new interpreter's seconds of imports. `command` is the attribute of
    deltaprop.cli: train, gradcheck, worked_example, ..."""
    import contextlib
    import io
    import logging
    import logging.config

    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    import deltaprop.cli

    out, err, code = io.StringIO(), io.StringIO(), 0
    root, package = logging.getLogger(), logging.getLogger("deltaprop")
    saved_root = root.handlers[:], root.level
    saved_package = package.handlers, package.propagate, package.level
    # The package logger as a new process has it (console_lines gave it a handler of its own):
    # the command's lines reach Hydra's handlers, the console and <command>.log.
    package.handlers, package.propagate = [], True
    package.setLevel(logging.NOTSET)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", [f"deltaprop-{command}", *args])
        # Hydra configures logging with dictConfig, which closes every handler there is,
        # pytest's own too; here it only adds its handlers (removed again below).
        patch.setattr(logging.config, "_clearExistingHandlers", lambda: None)
        if cwd is not None:
            patch.chdir(cwd)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                getattr(deltaprop.cli, command)(config_path=str(CONF))
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
        finally:
            GlobalHydra.instance().clear()
            # --help, --cfg and --info set Hydra's config and leave it (their process ends
            # there): a later call from Python would take itself for a Hydra job.
            HydraConfig.instance().cfg = None
            for handler in root.handlers[:]:
                if handler not in saved_root[0]:
                    root.removeHandler(handler)
                    handler.close()
            root.setLevel(saved_root[1])
            package.handlers, package.propagate = saved_package[:2]
            package.setLevel(saved_package[2])
    return Completed(code, out.getvalue(), err.getvalue())


@pytest.fixture
def run_command():
    """run_in_process, as a fixture."""
    return run_in_process


@pytest.fixture
def run_cli():
    """(script, *args, cwd=ROOT, env=cli_env(), timeout=300) -> CompletedProcess of
    `python experiments/<script> args...`, output captured as text."""

    def run(script: str, *args: str, cwd: Path = ROOT, env=None, timeout: float = 300):
        return subprocess.run(
            [sys.executable, str(EXPERIMENTS / script), *args], check=False, cwd=cwd,
            env=cli_env() if env is None else env, capture_output=True, text=True,
            timeout=timeout,
        )

    return run


def max_param_difference(path_a: Path, path_b: Path) -> float:
    """max |a − b| over every leaf of two parameter files of the same network."""
    params_a, params_b = load_params(path_a), load_params(path_b)
    assert len(params_a) == len(params_b)
    return max(
        float(np.max(np.abs(np.asarray(a[leaf], np.float64) - np.asarray(b[leaf], np.float64))))
        for a, b in zip(params_a, params_b)
        for leaf in ("W", "b")
    )


def assert_same_params(path_a: Path, path_b: Path) -> None:
    """Bit for bit: same dtypes, same values."""
    params_a, params_b = load_params(path_a), load_params(path_b)
    assert len(params_a) == len(params_b)
    for layer_a, layer_b in zip(params_a, params_b, strict=True):
        for leaf in ("W", "b"):
            assert layer_a[leaf].dtype == layer_b[leaf].dtype
            assert np.array_equal(layer_a[leaf], layer_b[leaf]), leaf


def pytest_collection_modifyitems(items):
    """The slow tests first, in their order (a stable sort): pytest-xdist hands tests out in
    this order, so the long ones start early on every worker and the short ones fill in at the
    end instead of one worker finishing a long test alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
