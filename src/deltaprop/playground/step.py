"""One step of training with every number: forward, backward and update of one minibatch, each
δ_l and gradient checked against jax.grad in float64.

The worked example (deltaprop.teaching.worked_example) covers sigmoid hidden layers with BCE.
The playground also trains tanh and relu layers and the quadratic cost, so its step is recorded
here for any φ and cost, with the same row-form notation (docs/backprop.md):

    z_l = a_{l−1} W_l + b_l,   a_l = φ(z_l) (hidden),   a_L = σ(z_L)
    δ_L = (a_L − y) / (N·n_L)                     cost bce
    δ_L = (a_L − y) ⊙ σ'(z_L) / (N·n_L)           cost mse
    δ_l = (δ_{l+1} W_{l+1}ᵀ) ⊙ φ'(z_l)             φ' = a(1 − a) | 1 − a² | 1[z > 0]
    ∂L/∂W_l = a_{l−1}ᵀ δ_l,   ∂L/∂b_l = Σ_batch δ_l,   θ ← θ − η ∂L/∂θ

Every number is `deltaprop.backprop.backprop_trace`'s (jitted, float64); jax.grad of
`deltaprop.losses.loss_fn` checks ∂L/∂θ, and jax.grad with respect to an offset added to z_l
checks δ_l. `picture(record, n)` puts example n into the worked example's network picture
(deltaprop.teaching.svg.Picture), drawn by `svg.format_svg`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from deltaprop.backprop import backprop_trace
from deltaprop.gradient_check import TOLERANCE_AUTODIFF, relative_error
from deltaprop.losses import elementwise_loss, loss_fn
from deltaprop.network import Params, activate, activation_derivative, linear
from deltaprop.precision import float64_scope
from deltaprop.teaching import svg


@dataclass(frozen=True, eq=False)
class StepLayer:
    """Layer l of one step. N examples, n_l units here, n_{l−1} below; float64 numpy arrays."""

    layer: int  # l, textbook numbering (2..L)
    weights: np.ndarray  # W_l, (n_{l−1}, n_l)
    biases: np.ndarray  # b_l, (n_l,)
    pre_activation: np.ndarray  # z_l, (N, n_l)
    activation: np.ndarray  # a_l = φ(z_l), or σ(z_L) at the output, (N, n_l)
    derivative: np.ndarray  # φ'(z_l) (hidden) or σ'(z_L) (output), (N, n_l)
    backpropagated: np.ndarray | None  # δ_{l+1} W_{l+1}ᵀ, (N, n_l); None at l = L
    delta: np.ndarray  # δ_l = ∂L/∂z_l of the mean loss, (N, n_l)
    grad_weights: np.ndarray  # ∂L/∂W_l = a_{l−1}ᵀ δ_l
    grad_biases: np.ndarray  # ∂L/∂b_l = Σ_batch δ_l
    new_weights: np.ndarray  # W_l − η ∂L/∂W_l
    new_biases: np.ndarray  # b_l − η ∂L/∂b_l
    errors: dict[str, float]  # relative errors against jax.grad: "delta", "W", "b"


@dataclass(frozen=True, eq=False)
class StepRecord:
    """Step `step` of a run: θ_t, its minibatch, and the update to θ_{t+1}."""

    step: int  # t: updates done before this one
    indices: np.ndarray  # the minibatch's rows of the training split, (N,)
    x: np.ndarray  # a_1, (N, n_1)
    y: np.ndarray  # (N, n_L)
    activation: str  # φ of the hidden layers
    loss: str  # bce | mse
    learning_rate: float  # η
    layers: tuple[StepLayer, ...]  # l = 2..L, the order of the forward pass
    loss_before: float  # L(θ_t) on the minibatch
    loss_after: float  # L(θ_{t+1}) on the minibatch
    tolerance: float

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.x.shape[1], *(layer.weights.shape[1] for layer in self.layers))

    @property
    def largest_error(self) -> float:
        return max(max(layer.errors.values()) for layer in self.layers)

    @property
    def passed(self) -> bool:
        return self.largest_error <= self.tolerance


def autodiff_deltas(params: Params, x, y, loss: str, activation: str) -> list[jax.Array]:
    """δ_l = ∂L/∂z_l by jax.grad: the gradient of L with respect to an offset ε_l on z_l, at 0."""

    def loss_of_offsets(offsets):
        a = x
        for index, (layer, offset) in enumerate(zip(params, offsets, strict=True)):
            z = linear(a, layer) + offset  # z_l + ε_l
            a = activate(activation, z) if index < len(params) - 1 else z
        return jnp.mean(elementwise_loss(loss, a, y))  # a is z_L + ε_L here: the logits

    zeros = [jnp.zeros((x.shape[0], layer["b"].shape[0]), x.dtype) for layer in params]
    return jax.grad(loss_of_offsets)(zeros)


@partial(jax.jit, static_argnames=("loss", "activation"))
def _step(params: Params, x, y, learning_rate, loss: str, activation: str):
    """The hand-written pass, jax.grad's ∂L/∂θ and δ_l, the update and the loss after it."""
    trace = backprop_trace(params, x, y, loss=loss, activation=activation)
    derivatives = [activation_derivative(activation, z, a)
                   for z, a in zip(trace.pre_activations[:-1], trace.activations[1:-1])]
    output = trace.activations[-1]
    derivatives.append(output * (1 - output))  # σ'(z_L) = a_L(1 − a_L)
    backpropagated = [delta @ layer["W"].T for delta, layer in zip(trace.deltas[1:], params[1:])]
    autodiff = (jax.grad(loss_fn)(params, x, y, loss=loss, activation=activation),
                autodiff_deltas(params, x, y, loss, activation))
    # θ ← θ − η ∂L/∂θ, leaf by leaf
    new_params = jax.tree.map(lambda p, g: p - learning_rate * g, params, trace.grads)
    loss_after = loss_fn(new_params, x, y, loss=loss, activation=activation)
    return trace, derivatives, backpropagated, autodiff, new_params, loss_after


def record_step(params: Params, x, y, learning_rate: float, loss: str, activation: str,
                step: int = 0, indices=None, tolerance: float = TOLERANCE_AUTODIFF) -> StepRecord:
    """Run one step on the minibatch (x, y) in float64 and check it against jax.grad.

    Args:
      params: θ_t, [{"W": (n_{l−1}, n_l), "b": (n_l,)}] for l = 2..L (cast to float64).
      x: (N, n_1) the minibatch; y: (N, n_L) its 0/1 targets.
      learning_rate: η; loss: "bce" | "mse"; activation: "sigmoid" | "tanh" | "relu".
      step, indices: which step and which rows of the training split, for the page.
    """
    with float64_scope():
        params = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float64), params)
        x, y = jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)
        result = jax.device_get(_step(params, x, y, jnp.asarray(learning_rate, jnp.float64),
                                      loss=loss, activation=activation))
        params, x, y = jax.device_get((params, x, y))
    trace, derivatives, backpropagated, (grads, deltas), new_params, loss_after = result
    layers = []
    for index, layer in enumerate(params):
        errors = {"delta": relative_error(trace.deltas[index], deltas[index]),
                  "W": relative_error(trace.grads[index]["W"], grads[index]["W"]),
                  "b": relative_error(trace.grads[index]["b"], grads[index]["b"])}
        layers.append(StepLayer(
            index + 2, layer["W"], layer["b"], trace.pre_activations[index],
            trace.activations[index + 1], derivatives[index],
            backpropagated[index] if index < len(params) - 1 else None, trace.deltas[index],
            trace.grads[index]["W"], trace.grads[index]["b"], new_params[index]["W"],
            new_params[index]["b"], errors))
    rows = np.arange(x.shape[0]) if indices is None else np.asarray(indices)
    return StepRecord(int(step), rows, x, y, activation, loss, float(learning_rate),
                      tuple(layers), float(trace.loss), float(loss_after), tolerance)


def picture(record: StepRecord, n: int = 0) -> svg.Picture:
    """Example n (0-based) of the minibatch in the worked example's network picture."""
    return svg.Picture(
        sizes=record.sizes,
        activations=(record.x[n], *(layer.activation[n] for layer in record.layers)),
        deltas=tuple(layer.delta[n] for layer in record.layers),
        weights=tuple(layer.weights for layer in record.layers),
        grad_weights=tuple(layer.grad_weights for layer in record.layers),
        biases=tuple(layer.biases for layer in record.layers),
        grad_biases=tuple(layer.grad_biases for layer in record.layers),
        target=record.y[n],
        loss=record.loss_before,
        example=n,
        n_examples=record.x.shape[0],
    )


def _listed(array: np.ndarray | None):
    return None if array is None else np.asarray(array, np.float64).tolist()


def record_json(record: StepRecord) -> dict:
    """The record as JSON-able lists (float64 values round-trip exactly through JSON)."""
    layers = [
        {"layer": layer.layer, "W": _listed(layer.weights), "b": _listed(layer.biases),
         "z": _listed(layer.pre_activation), "a": _listed(layer.activation),
         "derivative": _listed(layer.derivative), "backpropagated": _listed(layer.backpropagated),
         "delta": _listed(layer.delta), "grad_W": _listed(layer.grad_weights),
         "grad_b": _listed(layer.grad_biases), "new_W": _listed(layer.new_weights),
         "new_b": _listed(layer.new_biases), "errors": layer.errors}
        for layer in record.layers
    ]
    return {
        "step": record.step, "indices": record.indices.tolist(), "x": _listed(record.x),
        "y": _listed(record.y), "sizes": list(record.sizes), "activation": record.activation,
        "loss": record.loss, "learning_rate": record.learning_rate, "layers": layers,
        "loss_before": record.loss_before, "loss_after": record.loss_after,
        "tolerance": record.tolerance, "largest_error": record.largest_error,
        "passed": record.passed,
    }
