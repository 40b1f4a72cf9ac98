"""Choices: the names a user can type for each config choice, one Enum per choice.

A `Choice` is a str, so `Init.xavier == "xavier"` and it prints as its value; the structured
configs (settings.py) type their fields with these Enums, so Hydra rejects a misspelled choice at
compose time and lists the valid ones (`trainer.grad=autodif`). They live here, apart from the
modules that implement them, so that reading a config (a command's --help, tab completion)
imports no JAX; each implementing module keys its entries by these names (network.ACTIVATIONS,
losses.COSTS, ...) and a test checks that both list the same names.
"""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """An Enum whose members are their (lower-case) names as strings."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)


class Init(Choice):
    """model.init: the weight initialization (network.init_params)."""

    xavier = "xavier"  # Glorot uniform
    normal = "normal"  # W ~ N(0, 1/n_in) (Nielsen's network2.py weights), zero biases
    nielsen = "nielsen"  # network2.py's default_weight_initializer: normal's W, and b ~ N(0, 1)


class ActivationName(Choice):
    """model.activation: φ of the hidden layers (network.ACTIVATIONS); the output is always σ."""

    sigmoid = "sigmoid"
    tanh = "tanh"
    relu = "relu"


class LossName(Choice):
    """loss: the cost on the sigmoid outputs (losses.COSTS), averaged over all N·n_L elements."""

    bce = "bce"  # binary cross-entropy from the logits
    mse = "mse"  # Nielsen's quadratic cost ½(a − y)²


class Grad(Choice):
    """trainer.grad: the gradient the training step uses."""

    manual = "manual"  # the hand-written δ recursion (backprop.py)
    autodiff = "autodiff"  # jax.grad of loss_fn


class OptimizerName(Choice):
    """optimizer.name."""

    sgd = "sgd"  # the textbook's θ ← θ − η ∂L/∂θ
    momentum = "momentum"
    adam = "adam"


class Schedule(Choice):
    """optimizer.schedule: the shape of the learning rate over the run."""

    constant = "constant"
    cosine = "cosine"
    exponential = "exponential"


class PrecisionName(Choice):
    """trainer.precision (precision.py)."""

    float32 = "float32"
    float64 = "float64"
    bf16 = "bf16"


class MemberLayout(Choice):
    """sweep.engine: how a sweep's members are laid out (run/engines.py trains each)."""

    packed = "packed"  # members on the last axis of every array (packed.py)
    vmap = "vmap"  # jax.vmap of the single-run epoch over a leading member axis


class DatasetName(Choice):
    """dataset.name: what io.data.load_dataset can load (nothing is downloaded)."""

    moons = "moons"
    circles = "circles"
    xor = "xor"
    xor_table = "xor_table"  # the Boolean truth table: four examples
    spirals = "spirals"
    blobs = "blobs"
    breast_cancer = "breast_cancer"  # bundled with scikit-learn
    digits_binary = "digits_binary"  # bundled with scikit-learn: odd digits
    digits = "digits"  # bundled with scikit-learn: 10 classes, one sigmoid output each
    csv = "csv"  # the user's file (dataset.path, dataset.label)


class LoggerBackend(Choice):
    """logger.backend: the experiment tracker (logger=wandb | logger=none select it)."""

    wandb = "wandb"
    none = "none"


class LoggerMode(Choice):
    """logger.mode: W&B's mode."""

    offline = "offline"  # stored under the run directory; `wandb sync` uploads it later
    online = "online"  # online when the server answers, else offline with one warning line
    online_only = "online_only"  # online, or stop before any work (exit 2) when it cannot be
    disabled = "disabled"


class RunDirExists(Choice):
    """run_dir_exists: what to do with a run directory that holds an earlier run's outputs."""

    error = "error"  # refuse (unless resuming it)
    overwrite = "overwrite"


class Bug(Choice):
    """gradcheck.inject: a deliberate mistake put into the backward pass under check
    (teaching/bugs.py)."""

    none = "none"
    drop_sigma_prime = "drop_sigma_prime"
    missing_mean = "missing_mean"
    transposed_w = "transposed_w"


class WorkedExampleMode(Choice):
    """worked_example.mode."""

    default = "default"  # the configured network on a few examples
    by_hand = "by_hand"  # calculator-sized: [2,2,2,2,1] on the XOR table, every number's sum
