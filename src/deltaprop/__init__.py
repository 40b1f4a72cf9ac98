"""deltaprop: backpropagation for sigmoid/BCE networks, by hand in JAX, proven equal to autodiff.

    import deltaprop as dp
    params = dp.init_params(jax.random.key(0), [2, 3, 3, 3, 1])
    grads = dp.manual_grad(params, x, y)            # the δ recursion, by hand
    result = dp.train(dp.compose("trainer.epochs=20"))

Every name is imported on first use: `import deltaprop` itself loads nothing heavy, so a command's
--help and tab completion do not wait for JAX, and the math alone never loads Hydra.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name: the module that defines it
_PUBLIC = {
    "BackpropTrace": "deltaprop.backprop",
    "backprop_trace": "deltaprop.backprop",
    "loss_fn_manual": "deltaprop.backprop",
    "manual_grad": "deltaprop.backprop",
    "manual_value_and_grad": "deltaprop.backprop",
    "GradcheckReport": "deltaprop.gradient_check",
    "gradcheck": "deltaprop.gradient_check",
    "relative_error": "deltaprop.gradient_check",
    "binary_cross_entropy_with_logits": "deltaprop.losses",
    "loss_fn": "deltaprop.losses",
    "forward": "deltaprop.network",
    "init_params": "deltaprop.network",
    "layer_sizes": "deltaprop.network",
    "predict_proba": "deltaprop.network",
    "Model": "deltaprop.model",
    "TrainingDiverged": "deltaprop.errors",
    "train": "deltaprop.run.train",
    "RunResult": "deltaprop.run.result",
    "compose": "deltaprop.run.config",
}
__all__ = list(_PUBLIC)  # the names above, imported on first use


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'deltaprop' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
