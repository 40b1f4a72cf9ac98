"""Structured configs: the schema every Hydra config in `conf/` is checked against.

Hydra checks types, choices (each an Enum owned by the module that implements it) and unknown
keys at compose time (`optimizer.lr=abc` or `trainer.grad=autodif` fail naming the key and,
for a choice, the valid values); it does not check ranges, so `validate_config` does that before
any work starts and names the key and the bad value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from deltaprop.errors import InputError
from deltaprop.io.data import DatasetName
from deltaprop.io.rundir import RunDirExists
from deltaprop.io.tracking import LoggerMode, LoggerName
from deltaprop.losses import Loss
from deltaprop.network import Activation, Init
from deltaprop.population import MemberLayout
from deltaprop.precision import PrecisionName
from deltaprop.teaching.bugs import Bug
from deltaprop.training import Grad, OptimizerName, Schedule


class ConfigError(InputError):
    """A config value that composes but cannot be trained with (names the key and the value)."""


@dataclass
class ModelConfig:
    hidden: list[int] = field(default_factory=lambda: [16, 16])
    init: Init = Init.xavier
    activation: Activation = Activation.sigmoid  # hidden layers; the output is always σ
    init_scale: float = 1.0  # multiplies every initial parameter (the std of the init scheme)


@dataclass
class DatasetConfig:
    name: DatasetName = DatasetName.moons
    n_samples: int = 1000
    noise: float = 0.2
    path: str | None = None  # csv only (??? in conf/dataset/csv.yaml)
    # csv only: the label column, or a list of them (one sigmoid output each); Any because a
    # structured config cannot type str | list[str]: io.data.label_columns checks it
    label: Any = "label"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int | None = None  # seeds the data (synthetic draw, split); None: the run's seed


@dataclass
class OptimizerConfig:
    name: OptimizerName = OptimizerName.sgd
    lr: float = 1.0
    momentum: float = 0.9  # momentum only
    b1: float = 0.9  # adam only
    b2: float = 0.999  # adam only
    weight_decay: float = 0.0
    schedule: Schedule = Schedule.constant
    decay_rate: float = 0.1  # exponential: lr at the end / lr at the start
    warmup_epochs: int = 0


@dataclass
class TrainerConfig:
    epochs: int = 200
    batch_size: int = 32
    grad: Grad = Grad.manual
    eval_every: int = 10
    precision: PrecisionName = PrecisionName.float32
    progress: bool = True  # a progress bar on a terminal; a line per eval_every epochs in logs
    # checkpoint / resume
    checkpoint_every: int = 0  # epochs between checkpoints; 0 = no checkpoints
    keep_checkpoints: int = 3
    resume: str | None = None  # PATH (run dir or checkpoint) | auto
    resume_changes: list[str] = field(default_factory=list)  # settings a resume may change
    debug_nans: bool = False
    # debugging (conf/debug/)
    limit_batches: int = 0  # at most this many minibatches per epoch; 0: all
    overfit_batches: int = 0  # train on the first k minibatches' examples only; 0: all
    profile_epochs: int = 0  # a JAX profiler trace of this many epochs into <run_dir>/profile
    # vectorized sweeps
    num_seeds: int = 1
    # scale-out
    data_parallel: bool = False
    distributed: bool = False


@dataclass
class LoggerConfig:
    name: LoggerName = LoggerName.wandb
    mode: LoggerMode = LoggerMode.offline
    project: str = "deltaprop"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    log_gradcheck: bool = True
    log_artifacts: bool = True
    plots: bool = True  # write (and log) the PNG figures; false for many small runs
    system_metrics: bool = True  # W&B's CPU/GPU/memory charts of the run


@dataclass
class SweepConfig:
    """Axes of a population trained together as one program (see deltaprop.run.engines)."""

    # The member grid is the product of these axes and trainer.num_seeds; an empty axis holds
    # the run's own value (optimizer.lr, optimizer.weight_decay, the momentum, model.init_scale).
    lr: list[float] = field(default_factory=list)
    weight_decay: list[float] = field(default_factory=list)
    momentum: list[float] = field(default_factory=list)  # optimizer.momentum, or adam's b1
    init_scale: list[float] = field(default_factory=list)
    engine: MemberLayout = MemberLayout.packed
    member_chunk: int = 0  # packed engine: members trained together per chunk; 0: chosen for
    # the cache from the batch and the widest layer (deltaprop.packed.member_chunk)
    shard_members: bool = False  # the members split over every device, a block on each
    block: str | None = None  # "i/n": train only block i (0..n−1) of n of the grid (one SLURM
    # job each: -m hydra/launcher=slurm sweep.block=0/4,1/4,2/4,3/4); deltaprop-gather joins them


@dataclass
class WorkedExampleConfig:
    batch: int = 4  # training examples shown by experiments/worked_example.py
    mode: str = "default"  # default | by_hand (calculator-sized: [2,2,2,2,1] on the XOR table)
    digits: int = 4  # significant digits of every printed number
    page: bool = False  # also write backprop.html, a page that steps through training
    page_steps: int = 20  # training steps the page's slider covers


@dataclass
class GradcheckConfig:
    """experiments/gradcheck.py: where to check, and which gradient."""

    after_epochs: int = 0  # check after this many training epochs; 0: at the initial parameters
    inject: Bug = Bug.none  # a deliberate mistake in the backward pass (deltaprop.teaching.bugs)


@dataclass
class SpeedOfLearningConfig:
    """experiments/speed_of_learning.py: Nielsen's ‖∂C/∂b^l‖ per hidden layer, at init."""

    hidden: list[list[int]] = field(
        default_factory=lambda: [[30, 30], [30, 30, 30], [30, 30, 30, 30]]
    )  # the hidden widths of each network measured
    n_images: int = 1000  # training images the gradient is averaged over
    seeds: int = 5  # initializations averaged (seeds seed, seed + 1, ...)
    train_epochs: int = 0  # also measure after this many epochs of SGD; 0: at init only


@dataclass
class LearningSlowdownConfig:
    """experiments/learning_slowdown.py: Nielsen's one sigmoid neuron, x -> y, with each cost
    (the learning rate is optimizer.lr)."""

    # (w, b) of each run at epoch 0 (Nielsen ch. 3); list[Any]: OmegaConf refuses an int in a
    # list[list[float]] (starts=[[2,2]]), so _check_learning_slowdown checks the numbers
    starts: list[Any] = field(default_factory=lambda: [[2.0, 2.0], [0.6, 0.9]])
    epochs: int = 300  # gradient steps on the one example
    x: float = 1.0
    y: float = 0.0
    threshold: float = 0.1  # report the first epoch at which |a - y| < threshold
    report_epoch: int = 50  # report every run's output after this many epochs


@dataclass
class VanishingGradientsConfig:
    """experiments/vanishing_gradients.py: ‖δ_l‖, ‖∂L/∂b_l‖ and rms ∂L/∂W_l per layer from
    epoch 0, one seed sweep per hidden activation."""

    activations: list[Activation] = field(
        default_factory=lambda: [Activation.sigmoid, Activation.tanh, Activation.relu]
    )
    seeds: int = 8  # trainer.num_seeds of each activation's sweep (seeds seed, seed + 1, ...)
    plateau_margin: float = 0.05  # the plateau ends when the train loss is below ln 2 − this
    figure: str | None = None  # also write the figure here (e.g. docs/vanishing_gradients.png)


@dataclass
class Config:
    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    sweep: SweepConfig = field(default_factory=SweepConfig)
    worked_example: WorkedExampleConfig = field(default_factory=WorkedExampleConfig)
    gradcheck: GradcheckConfig = field(default_factory=GradcheckConfig)
    speed_of_learning: SpeedOfLearningConfig = field(default_factory=SpeedOfLearningConfig)
    learning_slowdown: LearningSlowdownConfig = field(default_factory=LearningSlowdownConfig)
    vanishing_gradients: VanishingGradientsConfig = field(
        default_factory=VanishingGradientsConfig)
    loss: Loss = Loss.bce  # the trained cost on σ(z_L): bce | mse (deltaprop.losses)
    seed: int = 0
    objective: str = "val/best_loss"  # what experiments/train.py returns to a Hydra sweeper
    run_dir: str | None = None  # default: Hydra's run directory, else ./outputs/<time>
    run_dir_exists: RunDirExists = RunDirExists.error
    experiment_name: str = "default"
    print_config: bool = True  # show the composed config at the start of a run
    run: str | None = None  # predict: the run directory whose model is applied


# `from __future__ import annotations` makes field types strings: the nested schemas by name.
_SCHEMAS = {
    "ModelConfig": ModelConfig, "DatasetConfig": DatasetConfig,
    "OptimizerConfig": OptimizerConfig, "TrainerConfig": TrainerConfig,
    "LoggerConfig": LoggerConfig, "SweepConfig": SweepConfig,
    "WorkedExampleConfig": WorkedExampleConfig, "GradcheckConfig": GradcheckConfig,
    "SpeedOfLearningConfig": SpeedOfLearningConfig,
    "LearningSlowdownConfig": LearningSlowdownConfig,
    "VanishingGradientsConfig": VanishingGradientsConfig,
}


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    store.store(name="config_schema", node=Config)


register_configs()

# Every other choice is an Enum field, checked by Hydra when the config is composed.
_CHOICES = {
    "worked_example.mode": ("default", "by_hand"),
}
SEED_LIMIT = 2**32  # jax.random.key takes seeds in [0, 2³²)
# Characters W&B does not allow in a project or entity name, and its longest tag.
_WANDB_FORBIDDEN = set("/\\#?%:")
_WANDB_TAG_LENGTH = 64


def _get(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def _bad(key: str, value: Any, requirement: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is invalid: {requirement}")


def validate_config(cfg: Any) -> None:
    """Check what Hydra cannot: ranges, keys added with `+` that the schema lacks, seeds, and the
    W&B names; raise ConfigError naming the first bad key and value."""
    _check_known_keys(cfg)
    for key, choices in _CHOICES.items():
        value = _get(cfg, key)
        if value not in choices:
            raise _bad(key, value, f"must be one of {', '.join(choices)}")
    _check_model_and_data(cfg)
    _check_optimizer(cfg)
    _check_trainer(cfg)
    _non_negative(cfg, "gradcheck.after_epochs")
    _check_speed_of_learning(cfg)
    _check_learning_slowdown(cfg)
    _check_logger(cfg.logger)


def _check_known_keys(cfg: Any, schema: type = Config, prefix: str = "") -> None:
    """Every key is one the schema declares: `+trainer.epoch=2` would otherwise be ignored."""
    known = {f.name: f for f in fields(schema)}
    for key in cfg:
        if key == "hydra" and not prefix:
            continue
        if key not in known:
            raise ConfigError(
                f"{prefix}{key} is not a config key (added with '+'?); the keys of "
                f"{prefix.rstrip('.') or 'the config'} are: {', '.join(known)}"
            )
        kind = known[key].type
        kind = _SCHEMAS.get(kind, kind) if isinstance(kind, str) else kind
        if is_dataclass(kind) and cfg[key] is not None:
            _check_known_keys(cfg[key], kind, f"{prefix}{key}.")


def _check_model_and_data(cfg: Any) -> None:
    hidden = list(_get(cfg, "model.hidden"))
    if any(width < 1 for width in hidden):
        raise _bad("model.hidden", hidden, "every width must be >= 1")
    for key in ("seed", "dataset.seed"):
        seed = _get(cfg, key)
        if seed is not None and not 0 <= seed < SEED_LIMIT:
            raise _bad(key, seed, f"must be in [0, 2**32) = [0, {SEED_LIMIT})")
    for key in ("dataset.n_samples", "worked_example.batch", "worked_example.digits",
                "worked_example.page_steps"):
        _at_least_one(cfg, key)
    _non_negative(cfg, "dataset.noise")
    for key in ("dataset.val_fraction", "dataset.test_fraction"):
        value = _get(cfg, key)
        if not 0 < value < 1:
            raise _bad(key, value, "must be in (0, 1)")
    total = _get(cfg, "dataset.val_fraction") + _get(cfg, "dataset.test_fraction")
    if total >= 0.9:
        raise _bad(
            "dataset.val_fraction + dataset.test_fraction", total, "must leave >= 10% for training"
        )
    if _get(cfg, "dataset.name") == "csv" and not _get(cfg, "dataset.path"):
        raise _bad("dataset.path", _get(cfg, "dataset.path"), "dataset=csv needs a CSV file path")


def _check_optimizer(cfg: Any) -> None:
    lr = _get(cfg, "optimizer.lr")
    if not (math.isfinite(lr) and lr > 0):
        raise _bad("optimizer.lr", lr, "must be finite and > 0")
    _non_negative(cfg, "optimizer.weight_decay")
    for key in ("optimizer.momentum", "optimizer.b1", "optimizer.b2"):
        value = _get(cfg, key)
        if not 0 <= value < 1:
            raise _bad(key, value, "must be in [0, 1)")
    scale = _get(cfg, "model.init_scale")
    if not (math.isfinite(scale) and scale > 0):
        raise _bad("model.init_scale", scale, "must be finite and > 0")
    _check_sweep_axes(cfg)
    decay_rate = _get(cfg, "optimizer.decay_rate")
    if not 0 < decay_rate <= 1:
        raise _bad("optimizer.decay_rate", decay_rate,
                   "must be in (0, 1]: the learning rate at the end over the one at the start")
    _non_negative(cfg, "optimizer.warmup_epochs")
    warmup, epochs = _get(cfg, "optimizer.warmup_epochs"), _get(cfg, "trainer.epochs")
    if warmup and warmup >= epochs:
        raise _bad("optimizer.warmup_epochs", warmup,
                   f"must be shorter than the run (trainer.epochs={epochs})")


# sweep.<axis>: (what every value must satisfy, as said in the error)
_SWEEP_AXES = {
    "lr": (lambda v: math.isfinite(v) and v > 0, "every lr must be finite and > 0"),
    "weight_decay": (lambda v: math.isfinite(v) and v >= 0, "every value must be finite and >= 0"),
    "momentum": (lambda v: 0 <= v < 1, "every value must be in [0, 1)"),
    "init_scale": (lambda v: math.isfinite(v) and v > 0, "every value must be finite and > 0"),
}


def _check_sweep_axes(cfg: Any) -> None:
    for axis, (valid, requirement) in _SWEEP_AXES.items():
        values = list(_get(cfg, f"sweep.{axis}"))
        if not all(valid(value) for value in values):
            raise _bad(f"sweep.{axis}", values, requirement)
        if len(set(values)) != len(values):
            raise _bad(f"sweep.{axis}", values, "every value must appear once")
    _non_negative(cfg, "sweep.member_chunk")
    block = _get(cfg, "sweep.block")
    if block is not None:
        parse_block(block)


def parse_block(block: str) -> tuple[int, int]:
    """sweep.block="i/n" -> (i, n), 0 <= i < n; ConfigError naming the key otherwise."""
    try:
        index, count = (int(part) for part in str(block).split("/"))
    except ValueError:
        raise _bad("sweep.block", block, "must be i/n, block i (0..n-1) of n") from None
    if not 0 <= index < count:
        raise _bad("sweep.block", block, "must be i/n with 0 <= i < n")
    return index, count


def _check_trainer(cfg: Any) -> None:
    for key in ("trainer.epochs", "trainer.batch_size", "trainer.eval_every",
                "trainer.keep_checkpoints", "trainer.num_seeds"):
        _at_least_one(cfg, key)
    for key in ("trainer.checkpoint_every", "trainer.limit_batches", "trainer.overfit_batches",
                "trainer.profile_epochs"):
        _non_negative(cfg, key)
    if _get(cfg, "trainer.distributed") and not _get(cfg, "trainer.data_parallel"):
        raise _bad(
            "trainer.distributed", True, "needs trainer.data_parallel=true (else every host "
            "trains the same model alone)"
        )


def _check_speed_of_learning(cfg: Any) -> None:
    hidden = [list(widths) for widths in _get(cfg, "speed_of_learning.hidden")]
    if not hidden or any(not widths or min(widths) < 1 for widths in hidden):
        raise _bad("speed_of_learning.hidden", hidden,
                   "needs at least one network, each with hidden widths >= 1")
    for key in ("speed_of_learning.n_images", "speed_of_learning.seeds"):
        _at_least_one(cfg, key)
    _non_negative(cfg, "speed_of_learning.train_epochs")


def _check_learning_slowdown(cfg: Any) -> None:
    starts = _get(cfg, "learning_slowdown.starts")
    starts = [list(start) if isinstance(start, Sequence) else start for start in starts]
    number = lambda value: isinstance(value, (int, float)) and not isinstance(value, bool)
    if not starts or any(not isinstance(start, list) or len(start) != 2
                         or not all(number(v) and math.isfinite(v) for v in start)
                         for start in starts):
        raise _bad("learning_slowdown.starts", starts,
                   "needs at least one start, each a finite [w, b]")
    _at_least_one(cfg, "learning_slowdown.epochs")
    for key in ("learning_slowdown.x", "learning_slowdown.y"):
        if not math.isfinite(_get(cfg, key)):
            raise _bad(key, _get(cfg, key), "must be finite")
    if not 0 <= _get(cfg, "learning_slowdown.y") <= 1:
        raise _bad("learning_slowdown.y", _get(cfg, "learning_slowdown.y"),
                   "must be in [0, 1]: a target of σ")
    threshold = _get(cfg, "learning_slowdown.threshold")
    if not 0 < threshold < 1:
        raise _bad("learning_slowdown.threshold", threshold, "must be in (0, 1)")
    report = _get(cfg, "learning_slowdown.report_epoch")
    epochs = _get(cfg, "learning_slowdown.epochs")
    if not 0 <= report <= epochs:
        raise _bad("learning_slowdown.report_epoch", report,
                   f"must be in [0, learning_slowdown.epochs={epochs}]")


def _check_logger(logger: Any) -> None:
    if logger.name != "wandb":
        return
    for key in ("project", "entity"):
        value = logger[key]
        if value is not None and (not value or set(value) & _WANDB_FORBIDDEN or len(value) > 128):
            raise _bad(f"logger.{key}", value,
                       "a W&B name is 1-128 characters, none of / \\ # ? % :")
    for tag in logger.tags:
        if not 0 < len(tag) <= _WANDB_TAG_LENGTH:
            raise _bad("logger.tags", list(logger.tags),
                       f"every tag must be 1-{_WANDB_TAG_LENGTH} characters")


def _at_least_one(cfg: Any, key: str) -> None:
    if _get(cfg, key) < 1:
        raise _bad(key, _get(cfg, key), "must be >= 1")


def _non_negative(cfg: Any, key: str) -> None:
    value = _get(cfg, key)
    if not (math.isfinite(value) and value >= 0):
        raise _bad(key, value, "must be finite and >= 0")
