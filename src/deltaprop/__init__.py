"""deltaprop: backpropagation for sigmoid/BCE networks, by hand in JAX, proven equal to autodiff."""

from deltaprop.backprop import (
    BackpropTrace,
    backprop_trace,
    loss_fn_manual,
    manual_grad,
    manual_value_and_grad,
)
from deltaprop.gradient_check import GradcheckReport, gradcheck, relative_error
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
        result = deltaprop.train(cfg)        # result["test/acc"], result.histories, ...

    Composes the packaged configs (`deltaprop.conf`, the project's conf/) with Hydra (imported
    here, not by `import deltaprop`)."""
    from deltaprop.run.config import compose as compose_config

    return compose_config(*overrides, config_name=config_name)


def __getattr__(name: str):
    # `deltaprop.train(cfg)` without importing Hydra, W&B and matplotlib for the math alone.
    if name == "train":
        from deltaprop.run.train import train

        return train
    if name == "TrainingDiverged":
        from deltaprop.nan_guard import TrainingDiverged

        return TrainingDiverged
    raise AttributeError(f"module 'deltaprop' has no attribute {name!r}")
