"""Settings: every config key as a plain, typed, frozen value, and the checks Hydra cannot make.

One frozen dataclass per config group (model, dataset, optimizer, trainer, logger, sweep) and one
root per command (`TrainSettings` for deltaprop-train, `GradcheckSettings`, ...). These
classes are the schema: run/config.py registers mutable copies of them with Hydra, so a
misspelled key or choice fails at compose time, and turns a composed config into them once, at
run setup. Below that nothing sees a DictConfig, and nothing here imports JAX, Hydra or OmegaConf.

`check(settings)` checks what Hydra cannot (ranges, seeds, W&B names) and raises ConfigError
naming the first bad key and value. `flat(settings)` lists every key with its value, the form
a resume and deltaprop-gather compare: a key added to a class here is compared from then on.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from typing import Any

from deltaprop.choices import (
    ActivationName,
    Bug,
    DatasetName,
    Grad,
    Init,
    LoggerBackend,
    LoggerMode,
    LossName,
    MemberLayout,
    OptimizerName,
    PrecisionName,
    RunDirExists,
    Schedule,
    WorkedExampleMode,
)
from deltaprop.errors import ConfigError

SEED_LIMIT = 2**32  # jax.random.key takes seeds in [0, 2³²); key(2³²) would equal key(0)


@cache
def _choice_fields(cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)
            if isinstance(hints[f.name], type) and issubclass(hints[f.name], Enum)}


class _Choices:
    """Settings built in Python take a choice by its name (`OptimizerSettings(name="adam")`)
    and refuse an unknown one, as the config does."""

    def __post_init__(self) -> None:
        for name, kind in _choice_fields(type(self)).items():
            value = getattr(self, name)
            if not isinstance(value, kind):
                if value not in kind.values():
                    raise ConfigError(f"{name}={value!r} must be one of "
                                      f"{', '.join(kind.values())}")
                object.__setattr__(self, name, kind(value))


@dataclass(frozen=True)
class ModelSettings(_Choices):
    hidden: tuple[int, ...] = (16, 16)
    init: Init = Init.xavier
    activation: ActivationName = ActivationName.sigmoid  # hidden layers; the output is σ
    init_scale: float = 1.0  # multiplies every initial parameter (the std of the init scheme)


@dataclass(frozen=True)
class DatasetSettings(_Choices):
    name: DatasetName = DatasetName.moons
    n_samples: int = 1000
    noise: float = 0.2
    path: str | None = None  # csv only
    # csv only: the label column, or a list of them (one sigmoid output each); Any because a
    # structured config cannot type str | list[str]: io.data.label_columns checks it
    label: Any = "label"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int | None = None  # seeds the data (synthetic draw, split); None: the run's seed


@dataclass(frozen=True)
class OptimizerSettings(_Choices):
    name: OptimizerName = OptimizerName.sgd
    lr: float = 1.0
    momentum: float = 0.9  # momentum only
    b1: float = 0.9  # adam only
    b2: float = 0.999  # adam only
    weight_decay: float = 0.0
    schedule: Schedule = Schedule.constant
    decay_rate: float = 0.1  # exponential: lr at the end / lr at the start
    warmup_epochs: int = 0

    @property
    def momentum_value(self) -> float | None:
        """The momentum this optimizer has: momentum's, adam's b1, or None (sgd)."""
        if self.name == OptimizerName.momentum:
            return float(self.momentum)
        return float(self.b1) if self.name == OptimizerName.adam else None


@dataclass(frozen=True)
class TrainerSettings(_Choices):
    epochs: int = 200
    batch_size: int = 32
    grad: Grad = Grad.manual
    eval_every: int = 10
    precision: PrecisionName = PrecisionName.float32
    progress: bool = True  # a progress bar on a terminal; a line per eval_every epochs in logs
    checkpoint_every: int = 0  # epochs between checkpoints; 0 = no checkpoints
    keep_checkpoints: int = 3
    resume: str | None = None  # PATH (run dir or checkpoint) | auto
    resume_changes: tuple[str, ...] = ()  # settings a resume may change (run/resume.py)
    debug_nans: bool = False  # stop the step at its first NaN or inf and name the operation
    limit_batches: int = 0  # at most this many minibatches per epoch; 0: all
    overfit_batches: int = 0  # train on the first k minibatches' examples only; 0: all
    profile_epochs: int = 0  # a JAX profiler trace of this many epochs into <run_dir>/profile
    num_seeds: int = 1
    data_parallel: bool = False
    distributed: bool = False


@dataclass(frozen=True)
class LoggerSettings(_Choices):
    backend: LoggerBackend = LoggerBackend.wandb  # wandb | none: the logger=... group sets it
    name: str | None = None  # the W&B run name; default: from the command line's overrides
    notes: str | None = None  # the W&B run's notes
    mode: LoggerMode = LoggerMode.offline
    project: str = "deltaprop"
    entity: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()
    log_gradcheck: bool = True
    log_artifacts: bool = True
    plots: bool = True  # write (and log) the PNG figures; false for many small runs
    system_metrics: bool = True  # W&B's CPU/GPU/memory charts of the run


@dataclass(frozen=True)
class SweepSettings(_Choices):
    """Axes of a population trained together as one program (run/engines.py). The member grid
    is the product of these axes and trainer.num_seeds; an empty axis holds the run's own value
    (optimizer.lr, optimizer.weight_decay, the momentum, model.init_scale)."""

    lr: tuple[float, ...] = ()
    weight_decay: tuple[float, ...] = ()
    momentum: tuple[float, ...] = ()  # optimizer.momentum, or adam's b1
    init_scale: tuple[float, ...] = ()
    engine: MemberLayout = MemberLayout.packed
    member_chunk: int = 0  # packed: members trained together per chunk; 0: packed.member_chunk
    shard_members: bool = False  # the members split over every device, a block on each
    block: str | None = None  # "i/n": train only block i (0..n−1) of n of the grid


@dataclass(frozen=True)
class TrainSettings(_Choices):
    """deltaprop-train (conf/config.yaml): what a training run reads, and only that; every key
    here is compared on resume (run/resume.py)."""

    model: ModelSettings = field(default_factory=ModelSettings)
    dataset: DatasetSettings = field(default_factory=DatasetSettings)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    logger: LoggerSettings = field(default_factory=LoggerSettings)
    sweep: SweepSettings = field(default_factory=SweepSettings)
    loss: LossName = LossName.bce  # the trained cost on σ(z_L): bce | mse (deltaprop.losses)
    seed: int = 0
    objective: str = "val/best_loss"  # what experiments/train.py returns to a Hydra sweeper
    run_dir: str | None = None  # default: outputs/<command>/<experiment_name>/<time>
    run_dir_exists: RunDirExists = RunDirExists.error
    experiment_name: str = "default"
    print_config: bool = True  # show the composed config at the start of a run

    @property
    def data_seed(self) -> int:
        """The seed of the data (synthetic draw, split): dataset.seed, else seed."""
        return int(self.seed if self.dataset.seed is None else self.dataset.seed)

    def training(self) -> TrainSettings:
        """The training run's settings alone (a command that trains passes these on)."""
        return TrainSettings(**{f.name: getattr(self, f.name)
                                for f in dataclasses.fields(TrainSettings)})


# ------------------------------------------------------- each other command: its own config


@dataclass(frozen=True)
class GradcheckOptions(_Choices):
    after_epochs: int = 0  # check after this many training epochs; 0: at the initial parameters
    inject: Bug = Bug.none  # a deliberate mistake in the backward pass (deltaprop.teaching.bugs)


@dataclass(frozen=True)
class GradcheckSettings(TrainSettings):
    """deltaprop-gradcheck (conf/gradcheck.yaml): manual_grad against jax.grad and finite
    differences on the network and data a training run of these settings starts from."""

    gradcheck: GradcheckOptions = field(default_factory=GradcheckOptions)


@dataclass(frozen=True)
class WorkedExampleOptions(_Choices):
    batch: int = 4  # training examples shown
    mode: WorkedExampleMode = WorkedExampleMode.default
    digits: int = 4  # significant digits of every printed number
    page: bool = False  # also write backprop.html, a page that steps through training
    page_steps: int = 20  # training steps the page's slider covers


@dataclass(frozen=True)
class WorkedExampleSettings(TrainSettings):
    """deltaprop-worked-example (conf/worked_example.yaml): every number of one step."""

    worked_example: WorkedExampleOptions = field(default_factory=WorkedExampleOptions)


@dataclass(frozen=True)
class SpeedOfLearningOptions:
    hidden: tuple[tuple[int, ...], ...] = ((30, 30), (30, 30, 30), (30, 30, 30, 30))
    n_images: int = 1000  # training images the gradient is averaged over
    seeds: int = 5  # initializations averaged (seeds seed, seed + 1, ...)
    train_epochs: int = 0  # also measure after this many epochs of SGD; 0: at init only


@dataclass(frozen=True)
class SpeedOfLearningSettings(TrainSettings):
    """deltaprop-speed-of-learning (conf/speed_of_learning.yaml): Nielsen's ‖∂C/∂b^l‖ per
    hidden layer, at initialization (and after training)."""

    speed_of_learning: SpeedOfLearningOptions = field(default_factory=SpeedOfLearningOptions)


@dataclass(frozen=True)
class LearningSlowdownOptions:
    # (w, b) of each run at epoch 0 (Nielsen ch. 3); Any: OmegaConf refuses an int in a
    # list[list[float]] (starts=[[2,2]]), so check() checks the numbers
    starts: tuple[Any, ...] = ((2.0, 2.0), (0.6, 0.9))
    epochs: int = 300  # gradient steps on the one example
    x: float = 1.0
    y: float = 0.0
    threshold: float = 0.1  # report the first epoch at which |a - y| < threshold
    report_epoch: int = 50  # report every run's output after this many epochs


@dataclass(frozen=True)
class LearningSlowdownSettings(TrainSettings):
    """deltaprop-learning-slowdown (conf/learning_slowdown.yaml): Nielsen's one sigmoid neuron,
    x -> y, with each cost (the learning rate is optimizer.lr)."""

    learning_slowdown: LearningSlowdownOptions = field(default_factory=LearningSlowdownOptions)


@dataclass(frozen=True)
class VanishingGradientsOptions:
    activations: tuple[ActivationName, ...] = (
        ActivationName.sigmoid, ActivationName.tanh, ActivationName.relu)
    seeds: int = 8  # trainer.num_seeds of each activation's sweep (seeds seed, seed + 1, ...)
    plateau_margin: float = 0.05  # the plateau ends when the train loss is below ln 2 − this
    figure: str | None = None  # also write the figure here (e.g. docs/vanishing_gradients.png)


@dataclass(frozen=True)
class VanishingGradientsSettings(TrainSettings):
    """deltaprop-vanishing-gradients (conf/vanishing_gradients.yaml): ‖δ_l‖, ‖∂L/∂b_l‖ and rms
    ∂L/∂W_l per layer from epoch 0, one seed sweep per hidden activation."""

    vanishing_gradients: VanishingGradientsOptions = field(
        default_factory=VanishingGradientsOptions)


@dataclass(frozen=True)
class PredictSettings(_Choices):
    """deltaprop-predict (conf/predict.yaml): a trained run's model on new data."""

    run: str | None = None  # the training run's directory (a sweep member's: members/member_<i>)
    dataset: DatasetSettings | None = None  # the data; none given: the run's own dataset
    allow_diverged: bool = False  # apply a diverged sweep member's frozen parameters anyway
    run_dir: str | None = None  # where predictions.csv goes; outputs/predict/<experiment>/<time>
    seed: int | None = None  # seeds a synthetic dataset; none given: the run's data seed
    experiment_name: str = "default"


@dataclass(frozen=True)
class EvalSettings(_Choices):
    """deltaprop-eval (conf/eval.yaml): a trained run scored on a split of its own data (its
    saved config rebuilds the data), or on a CSV with its columns."""

    run: str | None = None  # the training run's directory (a sweep member's: members/member_<i>)
    split: str = "test"  # train | val | test: the split of the run's own data to score
    csv: str | None = None  # score this CSV instead (the run's feature and label columns)
    allow_diverged: bool = False  # score a diverged sweep member's frozen parameters anyway
    out: str | None = None  # default: <run>/eval/<split> (or eval/<csv file name>)
    logger: LoggerSettings = field(default_factory=LoggerSettings)
    experiment_name: str = "default"
    run_dir: str | None = None  # Hydra's own files and eval.log: outputs/eval/<experiment>/<time>


# ------------------------------------------------------------------------ every key, flat


def plain(value: Any) -> Any:
    """A settings value as JSON: Enums as their names, tuples as lists, dataclasses as dicts."""
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def flat(settings: Any, prefix: str = "") -> dict[str, Any]:
    """{"model.hidden": [16, 16], "optimizer.lr": 1.0, ...}: every leaf key, values as JSON."""
    keys = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            keys |= flat(value, f"{prefix}{f.name}.")
        else:
            keys[f"{prefix}{f.name}"] = plain(value)
    return keys


# ------------------------------------------------------------------------ the checks


def _bad(key: str, value: Any, requirement: str) -> ConfigError:
    shown = list(value) if isinstance(value, tuple) else value
    return ConfigError(f"{key}={shown!r} is invalid: {requirement}")


def _get(settings: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        settings = getattr(settings, part)
    return settings


def _at_least_one(settings: Any, *keys: str) -> None:
    for key in keys:
        if _get(settings, key) < 1:
            raise _bad(key, _get(settings, key), "must be >= 1")


def _non_negative(settings: Any, *keys: str) -> None:
    for key in keys:
        value = _get(settings, key)
        if not (math.isfinite(value) and value >= 0):
            raise _bad(key, value, "must be finite and >= 0")


def check(settings: Any) -> None:
    """Check what Hydra cannot: ranges, seeds and W&B names, and each command's own group;
    raise ConfigError naming the first bad key and value."""
    if isinstance(settings, TrainSettings):
        _check_model_and_data(settings)
        _check_optimizer(settings)
        _check_trainer(settings)
    if hasattr(settings, "logger"):
        _check_logger(settings.logger)
    for name, checker in _COMMAND_CHECKS.items():
        if hasattr(settings, name):
            checker(settings)


def _check_model_and_data(settings: TrainSettings) -> None:
    hidden = list(settings.model.hidden)
    if any(width < 1 for width in hidden):
        raise _bad("model.hidden", hidden, "every width must be >= 1")
    last_seed = settings.seed + settings.trainer.num_seeds - 1  # members take seed, seed + 1, ...
    if not 0 <= settings.seed or last_seed >= SEED_LIMIT:
        raise _bad("seed", settings.seed, f"seed .. seed + trainer.num_seeds - 1 must lie in "
                   f"[0, 2**32) = [0, {SEED_LIMIT}): each member's seed is its own PRNG stream")
    seed = settings.dataset.seed
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise _bad("dataset.seed", seed, f"must be in [0, 2**32) = [0, {SEED_LIMIT})")
    _at_least_one(settings, "dataset.n_samples")
    _non_negative(settings, "dataset.noise")
    for key in ("dataset.val_fraction", "dataset.test_fraction"):
        value = _get(settings, key)
        if not 0 < value < 1:
            raise _bad(key, value, "must be in (0, 1)")
    total = settings.dataset.val_fraction + settings.dataset.test_fraction
    if total >= 0.9:
        raise _bad("dataset.val_fraction + dataset.test_fraction", total,
                   "must leave >= 10% for training")
    if settings.dataset.name == DatasetName.csv and not settings.dataset.path:
        raise _bad("dataset.path", settings.dataset.path, "dataset=csv needs a CSV file path")


def _check_optimizer(settings: TrainSettings) -> None:
    lr = settings.optimizer.lr
    if not (math.isfinite(lr) and lr > 0):
        raise _bad("optimizer.lr", lr, "must be finite and > 0")
    _non_negative(settings, "optimizer.weight_decay", "optimizer.warmup_epochs")
    for key in ("optimizer.momentum", "optimizer.b1", "optimizer.b2"):
        if not 0 <= _get(settings, key) < 1:
            raise _bad(key, _get(settings, key), "must be in [0, 1)")
    scale = settings.model.init_scale
    if not (math.isfinite(scale) and scale > 0):
        raise _bad("model.init_scale", scale, "must be finite and > 0")
    _check_sweep(settings)
    decay_rate = settings.optimizer.decay_rate
    if not 0 < decay_rate <= 1:
        raise _bad("optimizer.decay_rate", decay_rate,
                   "must be in (0, 1]: the learning rate at the end over the one at the start")
    warmup, epochs = settings.optimizer.warmup_epochs, settings.trainer.epochs
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


def _check_sweep(settings: TrainSettings) -> None:
    for axis, (valid, requirement) in _SWEEP_AXES.items():
        values = list(_get(settings, f"sweep.{axis}"))
        if not all(valid(value) for value in values):
            raise _bad(f"sweep.{axis}", values, requirement)
        if len(set(values)) != len(values):
            raise _bad(f"sweep.{axis}", values, "every value must appear once")
    if settings.sweep.momentum and settings.optimizer.momentum_value is None:
        raise ConfigError(f"sweep.momentum={list(settings.sweep.momentum)} needs an optimizer "
                          f"with momentum (optimizer=momentum or adam, where it is b1), not "
                          f"optimizer={settings.optimizer.name}")
    _non_negative(settings, "sweep.member_chunk")
    if settings.sweep.block is not None:
        parse_block(settings.sweep.block)


def parse_block(block: str) -> tuple[int, int]:
    """sweep.block="i/n" -> (i, n), 0 <= i < n; ConfigError naming the key otherwise."""
    try:
        index, count = (int(part) for part in str(block).split("/"))
    except ValueError:
        raise _bad("sweep.block", block, "must be i/n, block i (0..n-1) of n") from None
    if not 0 <= index < count:
        raise _bad("sweep.block", block, "must be i/n with 0 <= i < n")
    return index, count


def _check_trainer(settings: TrainSettings) -> None:
    _at_least_one(settings, "trainer.epochs", "trainer.batch_size", "trainer.eval_every",
                  "trainer.keep_checkpoints", "trainer.num_seeds")
    _non_negative(settings, "trainer.checkpoint_every", "trainer.limit_batches",
                  "trainer.overfit_batches", "trainer.profile_epochs")
    if settings.trainer.distributed and not settings.trainer.data_parallel:
        raise _bad("trainer.distributed", True, "needs trainer.data_parallel=true (else every "
                   "host trains the same model alone)")


# Characters W&B does not allow in a project or entity name, and its longest tag.
_WANDB_FORBIDDEN = set("/\\#?%:")
_WANDB_TAG_LENGTH = 64


def _check_logger(logger: LoggerSettings) -> None:
    if logger.name in LoggerBackend.values():
        raise _bad("logger.name", logger.name, "logger.name is the W&B run name; choose the "
                   f"tracker with logger={logger.name} (or logger.backend={logger.name})")
    if logger.backend != LoggerBackend.wandb:
        return
    for key in ("project", "entity"):
        value = getattr(logger, key)
        if value is not None and (not value or set(value) & _WANDB_FORBIDDEN or len(value) > 128):
            raise _bad(f"logger.{key}", value,
                       "a W&B name is 1-128 characters, none of / \\ # ? % :")
    for tag in logger.tags:
        if not 0 < len(tag) <= _WANDB_TAG_LENGTH:
            raise _bad("logger.tags", list(logger.tags),
                       f"every tag must be 1-{_WANDB_TAG_LENGTH} characters")


# ------------------------------------------------------------------ each command's own group


def _check_worked_example(settings: Any) -> None:
    _at_least_one(settings, "worked_example.batch", "worked_example.digits",
                  "worked_example.page_steps")


def _check_gradcheck(settings: Any) -> None:
    _non_negative(settings, "gradcheck.after_epochs")


def _check_speed_of_learning(settings: Any) -> None:
    hidden = [list(widths) for widths in settings.speed_of_learning.hidden]
    if not hidden or any(not widths or min(widths) < 1 for widths in hidden):
        raise _bad("speed_of_learning.hidden", hidden,
                   "needs at least one network, each with hidden widths >= 1")
    _at_least_one(settings, "speed_of_learning.n_images", "speed_of_learning.seeds")
    _non_negative(settings, "speed_of_learning.train_epochs")


def _check_learning_slowdown(settings: Any) -> None:
    options = settings.learning_slowdown
    starts = [list(start) if isinstance(start, Sequence) else start for start in options.starts]
    number = lambda value: isinstance(value, (int, float)) and not isinstance(value, bool)
    if not starts or any(not isinstance(start, list) or len(start) != 2
                         or not all(number(v) and math.isfinite(v) for v in start)
                         for start in starts):
        raise _bad("learning_slowdown.starts", starts,
                   "needs at least one start, each a finite [w, b]")
    _at_least_one(settings, "learning_slowdown.epochs")
    for key in ("learning_slowdown.x", "learning_slowdown.y"):
        if not math.isfinite(_get(settings, key)):
            raise _bad(key, _get(settings, key), "must be finite")
    if not 0 <= options.y <= 1:
        raise _bad("learning_slowdown.y", options.y, "must be in [0, 1]: a target of σ")
    if not 0 < options.threshold < 1:
        raise _bad("learning_slowdown.threshold", options.threshold, "must be in (0, 1)")
    if not 0 <= options.report_epoch <= options.epochs:
        raise _bad("learning_slowdown.report_epoch", options.report_epoch,
                   f"must be in [0, learning_slowdown.epochs={options.epochs}]")


def _check_vanishing_gradients(settings: Any) -> None:
    options = settings.vanishing_gradients
    _at_least_one(settings, "vanishing_gradients.seeds")
    _non_negative(settings, "vanishing_gradients.plateau_margin")
    if not options.activations:
        raise _bad("vanishing_gradients.activations", [], "needs at least one activation")


_COMMAND_CHECKS = {
    "worked_example": _check_worked_example, "gradcheck": _check_gradcheck,
    "speed_of_learning": _check_speed_of_learning,
    "learning_slowdown": _check_learning_slowdown,
    "vanishing_gradients": _check_vanishing_gradients,
}
