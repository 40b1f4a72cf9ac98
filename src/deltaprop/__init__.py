"""deltaprop: backpropagation for sigmoid/BCE networks, by hand in JAX, proven equal to autodiff."""

from deltaprop.backprop import (
    BackpropTrace,
    backprop_trace,
    loss_fn_manual,
    manual_grad,
    manual_value_and_grad,
)
from deltaprop.gradient_check import GradcheckReport, gradcheck, relative_error
from deltaprop.io import config as _config  # noqa: F401  (registers the config schema with Hydra)
from deltaprop.losses import binary_cross_entropy_with_logits, loss_fn
from deltaprop.network import forward, init_params, layer_sizes, predict_proba

__all__ = [
    "BackpropTrace",
    "GradcheckReport",
    "TrainingDiverged",
    "backprop_trace",
    "binary_cross_entropy_with_logits",
    "compose",
    "forward",
    "gradcheck",
    "init_params",
    "layer_sizes",
    "loss_fn",
    "loss_fn_manual",
    "manual_grad",
    "manual_value_and_grad",
    "predict_proba",
    "relative_error",
    "train",
]
__version__ = "0.1.0"


def compose(*overrides: str, config_name: str = "config"):
    """The config `python experiments/train.py <overrides>` runs, for notebooks and scripts:

        cfg = deltaprop.compose("trainer.epochs=20", "optimizer=adam")
        metrics = deltaprop.train(cfg)

    Composes the packaged configs (`deltaprop.conf`, the project's conf/) with Hydra."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("deltaprop.conf", version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides))


def __getattr__(name: str):
    # `deltaprop.train(cfg)` without importing Hydra, W&B and matplotlib for the math alone.
    if name == "train":
        from deltaprop.run.train import train

        return train
    if name == "TrainingDiverged":
        from deltaprop.nan_guard import TrainingDiverged

        return TrainingDiverged
    raise AttributeError(f"module 'deltaprop' has no attribute {name!r}")
