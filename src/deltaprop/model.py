"""The model as one value: layer sizes, the cost, the hidden activation and the init scheme.

    Model(sizes=(2, 16, 16, 1), loss=BCE, activation=SIGMOID, init="xavier")

A run, its engine, its evaluation, its gradient check and its saved parameters all carry this
one immutable value instead of loose names; it is hashable, so compiled programs are cached on
it (run/engines.py). `Model.named` builds it from the config's names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deltaprop.choices import Init
from deltaprop.losses import BCE, Cost, cost_named
from deltaprop.network import SIGMOID, Activation, activation_named, validate_sizes


@dataclass(frozen=True)
class Model:
    """A fully connected network: sizes [n_1 (inputs), ..., n_L (outputs)], the cost on its
    sigmoid outputs, the φ of its hidden layers and how its parameters start."""

    sizes: tuple[int, ...]
    loss: Cost = BCE
    activation: Activation = SIGMOID
    init: Init = Init.xavier

    @classmethod
    def named(cls, sizes: Sequence[int], loss: str | Cost = "bce",
              activation: str | Activation = "sigmoid", init: str = "xavier") -> Model:
        """A Model from the config's names (loss=bce, model.activation=tanh, model.init=...)."""
        return cls(validate_sizes(sizes), cost_named(loss), activation_named(activation),
                   Init(str(init)))

    @property
    def parts(self) -> dict[str, Any]:
        """{"loss": the Cost, "activation": the Activation}: the keyword arguments of the math
        functions (backprop.manual_grad, losses.loss_fn, ...)."""
        return {"loss": self.loss, "activation": self.activation}

    @property
    def names(self) -> dict[str, Any]:
        """{"loss": "bce", "activation": "sigmoid"}: what a parameter file records to apply
        the network again (io/files.py metadata)."""
        return {"loss": self.loss.name, "activation": self.activation.name}


def parts_of(model: Model | None) -> dict[str, Any]:
    """model.parts; None: BCE and sigmoid, the textbook's network."""
    return {"loss": BCE, "activation": SIGMOID} if model is None else model.parts
