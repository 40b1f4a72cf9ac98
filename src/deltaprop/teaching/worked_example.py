"""The textbook example, step by step: every z_l, a_l, δ_l and gradient of one batch, one update.

`worked_example(params, x, y, learning_rate)` runs the hand-written pass
(`deltaprop.backprop.backprop_trace`, jitted) on a small batch in float64 and records, for each
layer l = 2..L (row form: one example per row, W_l[i, j] = w^l_{ji}):

    z_l = a_{l−1} W_l + b_l                    a_1 = x
    a_l = σ(z_l)
    δ_L = (a_L − y) / (N·n_L)                  output layer: σ' cancels against BCE
    δ_l = (δ_{l+1} W_{l+1}ᵀ) ⊙ a_l(1 − a_l)     hidden layers
    ∂L/∂W_l = a_{l−1}ᵀ δ_l,  ∂L/∂b_l = Σ_batch δ_l
    W_l ← W_l − η ∂L/∂W_l,   b_l ← b_l − η ∂L/∂b_l

Two errors, two symbols: δ_l (subscript) is ∂L/∂z_l of the MEAN loss over the N·n_L output
elements, what the code computes; the textbook's δ^l (superscript) is the error of one example,
δ^L = a^L − y, so δ_l[n, j] = δ^l_j(x_n) / (N·n_L). The 1/(N·n_L) of the mean lives in δ_L, so
no 1/N appears in the gradients.

Every δ_l, ∂L/∂W_l and ∂L/∂b_l is checked against jax.grad (δ_l as the gradient with respect
to an offset added to z_l), the update against `deltaprop.training.make_train_step` with
`optax.sgd`, and the loss must fall. The change of the loss is set beside its Taylor expansion
along the step, at η and at η/10 (`LossChange`), with the curvature gᵀHg from jax.jvp of
`manual_grad`, checked against jax.jvp of jax.grad. The renderers (render.py, svg.py, page.py)
turn the record into text and pictures; nothing here prints or writes files
(experiments/worked_example.py does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from deltaprop.backprop import backprop_trace, manual_grad, manual_value_and_grad
from deltaprop.gradient_check import TOLERANCE_AUTODIFF, relative_error
from deltaprop.losses import binary_cross_entropy_with_logits, loss_fn
from deltaprop.network import Params, check_batch, layer_sizes, linear
from deltaprop.precision import float64_scope
from deltaprop.training import make_train_step

DEFAULT_BATCH = 4


@dataclass(frozen=True, eq=False)
class LayerRecord:
    """Everything about layer l for one batch: forward values, δ_l, gradients, update, checks.

    Shapes: N examples, n_l units in this layer, n_{l−1} in the layer below.
    """

    layer: int  # l, textbook numbering (2..L)
    weights: np.ndarray  # W_l, (n_{l−1}, n_l)
    biases: np.ndarray  # b_l, (n_l,)
    pre_activation: np.ndarray  # z_l = a_{l−1} W_l + b_l, (N, n_l)
    activation: np.ndarray  # a_l = σ(z_l), (N, n_l)
    sigmoid_derivative: np.ndarray | None  # σ'(z_l) = a_l(1 − a_l), (N, n_l); None at l = L
    backpropagated: np.ndarray | None  # δ_{l+1} W_{l+1}ᵀ, (N, n_l); None at l = L
    delta: np.ndarray  # δ_l = ∂L/∂z_l, (N, n_l)
    grad_weights: np.ndarray  # ∂L/∂W_l = a_{l−1}ᵀ δ_l, (n_{l−1}, n_l)
    grad_biases: np.ndarray  # ∂L/∂b_l = Σ_batch δ_l, (n_l,)
    new_weights: np.ndarray  # W_l − η ∂L/∂W_l
    new_biases: np.ndarray  # b_l − η ∂L/∂b_l
    error_delta: float  # relative error of δ_l against jax.grad
    error_weights: float  # ... of ∂L/∂W_l
    error_biases: float  # ... of ∂L/∂b_l
    passed: bool  # all three errors within the tolerance


@dataclass(frozen=True)
class LossChange:
    """The change of the loss over one step θ → θ − η g (g = ∂L/∂θ) against its Taylor series:

        L(θ − η g) − L(θ) = −η ‖g‖² + ½ η² gᵀHg + O(η³)        H = ∂²L/∂θ²

    The first-order term misses the actual change by about the curvature term ½ η² gᵀHg; against
    the change (about η ‖g‖²) that is ½ η gᵀHg / ‖g‖², which shrinks in proportion to η, so at
    η/10 the first-order prediction is about ten times closer. `first_order_miss` is the miss as
    a share of the actual change, the "off by" the renderers print.
    """

    learning_rate: float  # the η of this step
    actual: float  # L(θ − η g) − L(θ)
    first_order: float  # −η ‖g‖²
    second_order: float  # −η ‖g‖² + ½ η² gᵀHg

    @property
    def first_order_miss(self) -> float:
        """(first order − actual) / |actual|: how far off the first-order prediction is."""
        return (self.first_order - self.actual) / abs(self.actual)

    @property
    def second_order_miss(self) -> float:
        return (self.second_order - self.actual) / abs(self.actual)


@dataclass(frozen=True, eq=False)
class WorkedExample:
    """One forward pass, the backward pass layer by layer, and one gradient-descent step.

    `layers` runs from the output layer L down to layer 2: the order in which backprop computes
    the δ's. Arrays are float64 numpy copies.
    """

    x: np.ndarray  # a_1, (N, n_1)
    y: np.ndarray  # targets, (N, n_L)
    sizes: tuple[int, ...]  # (n_1, ..., n_L)
    learning_rate: float  # η
    layers: tuple[LayerRecord, ...]  # l = L, L−1, ..., 2
    loss_before: float
    loss_after: float
    predicted_loss_change: float  # first order: −η ‖∂L/∂θ‖²
    error_update: float  # relative error of the new params against make_train_step(optax.sgd(η))
    tolerance: float
    loss_changes: tuple[LossChange, ...] = ()  # at η and at η/10
    squared_gradient_norm: float = 0.0  # ‖g‖² = ‖∂L/∂θ‖² over every W_l and b_l
    curvature: float = 0.0  # gᵀHg, by jax.jvp of manual_grad
    error_curvature: float = 0.0  # ... against jax.jvp of jax.grad(loss_fn)
    data: str = ""  # where x and y come from, e.g. "the XOR truth table"

    @property
    def forward_layers(self) -> tuple[LayerRecord, ...]:
        """Layers 2, 3, ..., L: the order of the forward pass."""
        return tuple(reversed(self.layers))

    @property
    def loss_decreased(self) -> bool:
        return self.loss_after < self.loss_before

    @property
    def update_passed(self) -> bool:
        return self.error_update <= self.tolerance

    @property
    def curvature_passed(self) -> bool:
        return self.error_curvature <= self.tolerance

    @property
    def passed(self) -> bool:
        layers_passed = all(record.passed for record in self.layers)
        return layers_passed and self.update_passed and self.curvature_passed and self.loss_decreased

    def layer(self, number: int) -> LayerRecord:
        """The record of textbook layer `number` (2..L)."""
        for record in self.layers:
            if record.layer == number:
                return record
        raise KeyError(f"no layer {number}: layers run from 2 to {len(self.sizes)}")


def autodiff_deltas(params: Params, x: jax.Array, y: jax.Array) -> list[jax.Array]:
    """δ_l = ∂L/∂z_l by jax.grad: the gradient with respect to an offset ε_l added to z_l, at 0."""

    def loss_of_offsets(offsets):
        a = x
        for layer, offset in zip(params, offsets, strict=True):
            z = linear(a, layer) + offset  # z_l + ε_l
            a = jax.nn.sigmoid(z)
        return jnp.mean(binary_cross_entropy_with_logits(z, y))  # z is z_L + ε_L here

    zeros = [jnp.zeros((x.shape[0], layer["b"].shape[0]), x.dtype) for layer in params]
    return jax.grad(loss_of_offsets)(zeros)


@jax.jit
def _step_and_checks(params: Params, x, y, grads: Params, learning_rate):
    """jax.grad's ∂L/∂θ and δ_l, the update θ − η ∂L/∂θ, its loss, and training's own step."""
    autodiff_grads = jax.grad(loss_fn)(params, x, y)
    deltas_by_autodiff = autodiff_deltas(params, x, y)
    # θ ← θ − η ∂L/∂θ, leaf by leaf.
    new_params = jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)
    loss_after = loss_fn(new_params, x, y)
    # The same step through the training code: optax.sgd(η) on manual_value_and_grad.
    sgd = optax.sgd(learning_rate)
    trained_params, _, _ = make_train_step(sgd, manual_value_and_grad)(
        params, sgd.init(params), x, y
    )
    return autodiff_grads, deltas_by_autodiff, new_params, loss_after, trained_params


@jax.jit
def _taylor_terms(params: Params, x, y, grads: Params, learning_rates: jax.Array):
    """gᵀHg two ways, and L(θ − η g) for each η: the data of `LossChange`.

    Hg is the derivative of the gradient along g, d/dt ∂L/∂θ(θ + t g) at t = 0: jax.jvp of our
    backward pass (manual_grad), and of jax.grad(loss_fn) as the check.
    """
    _, hessian_g = jax.jvp(lambda p: manual_grad(p, x, y), (params,), (grads,))
    _, hessian_g_autodiff = jax.jvp(lambda p: jax.grad(loss_fn)(p, x, y), (params,), (grads,))

    def loss_after(learning_rate):  # L(θ − η g)
        return loss_fn(jax.tree.map(lambda p, g: p - learning_rate * g, params, grads), x, y)

    return hessian_g, hessian_g_autodiff, jax.vmap(loss_after)(learning_rates)


def _loss_changes(params, x, y, grads, learning_rate, loss_before):
    """(LossChanges at η and η/10, ‖g‖², gᵀHg, its relative error against autodiff)."""
    rates = [float(learning_rate), float(learning_rate) / 10]
    hessian_g, hessian_g_autodiff, losses = jax.device_get(
        _taylor_terms(params, x, y, grads, jnp.asarray(rates, jnp.float64))
    )
    squared_norm = _squared_norm(grads)
    curvature = float(np.dot(_flatten(grads), _flatten(hessian_g)))  # gᵀHg
    changes = tuple(
        LossChange(
            learning_rate=rate,
            actual=float(loss) - loss_before,
            first_order=-rate * squared_norm,  # −η‖g‖²
            second_order=-rate * squared_norm + 0.5 * rate**2 * curvature,  # + ½η² gᵀHg
        )
        for rate, loss in zip(rates, losses, strict=True)
    )
    error = relative_error(_flatten(hessian_g), _flatten(hessian_g_autodiff))
    return changes, squared_norm, curvature, error


def _flatten(tree: Any) -> np.ndarray:
    return np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(tree)])


def _squared_norm(tree: Any) -> float:
    return float(np.sum(np.square(_flatten(tree))))


def _layer_record(
    index, params, trace, autodiff_grads, autodiff_deltas, new_params, tolerance
) -> LayerRecord:
    """The record of layer l = index + 2 (params[index]), checked against jax.grad."""
    a = trace.activations[index + 1]  # a_l (activations start at a_1 = x)
    hidden = index < len(params) - 1
    errors = (
        relative_error(trace.deltas[index], autodiff_deltas[index]),
        relative_error(trace.grads[index]["W"], autodiff_grads[index]["W"]),
        relative_error(trace.grads[index]["b"], autodiff_grads[index]["b"]),
    )
    return LayerRecord(
        layer=index + 2,
        weights=params[index]["W"],
        biases=params[index]["b"],
        pre_activation=trace.pre_activations[index],
        activation=a,
        sigmoid_derivative=a * (1 - a) if hidden else None,
        backpropagated=trace.deltas[index + 1] @ params[index + 1]["W"].T if hidden else None,
        delta=trace.deltas[index],
        grad_weights=trace.grads[index]["W"],
        grad_biases=trace.grads[index]["b"],
        new_weights=new_params[index]["W"],
        new_biases=new_params[index]["b"],
        error_delta=errors[0],
        error_weights=errors[1],
        error_biases=errors[2],
        passed=max(errors) <= tolerance,
    )


def worked_example(
    params: Params,
    x: ArrayLike,
    y: ArrayLike,
    learning_rate: float,
    tolerance: float = TOLERANCE_AUTODIFF,
    data: str = "",
) -> WorkedExample:
    """Run backprop on one batch, check every layer against jax.grad, take one step θ ← θ − η g.

    Everything runs in float64 (params and data are cast up), whatever the training precision.

    Args:
      params: [{"W": (n_{l−1}, n_l), "b": (n_l,)}] for l = 2..L.
      x: (N, n_1) inputs; keep N small, every value is printed.
      y: (N, n_L) targets in {0, 1}.
      learning_rate: η of the plain gradient-descent step.
      tolerance: largest relative error (float64) accepted against jax.grad.
      data: where x and y come from, for the renderers ("the XOR truth table").

    Returns:
      A WorkedExample; `.passed` is False when any check fails.
    """
    check_batch(params, x, y)
    if not learning_rate > 0:
        raise ValueError(f"learning_rate={learning_rate!r} must be > 0")
    with float64_scope():
        params = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float64), params)
        x, y = jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)
        # The recorded values are exactly what `jax.jit(backprop_trace)` returns, as in training.
        trace = jax.device_get(jax.jit(backprop_trace)(params, x, y))
        checks = jax.device_get(_step_and_checks(params, x, y, trace.grads, learning_rate))
        changes, squared_norm, curvature, error_curvature = _loss_changes(
            params, x, y, trace.grads, float(learning_rate), float(trace.loss)
        )
        params, x, y = jax.device_get((params, x, y))
    autodiff_grads, autodiff_deltas, new_params, loss_after, trained_params = checks

    records = [
        _layer_record(index, params, trace, autodiff_grads, autodiff_deltas, new_params, tolerance)
        for index in reversed(range(len(params)))  # the output layer first, as backprop goes
    ]
    return WorkedExample(
        x=x,
        y=y,
        sizes=layer_sizes(params),
        learning_rate=float(learning_rate),
        layers=tuple(records),
        loss_before=float(trace.loss),
        loss_after=float(loss_after),
        predicted_loss_change=-learning_rate * _squared_norm(trace.grads),
        error_update=relative_error(_flatten(new_params), _flatten(trained_params)),
        tolerance=tolerance,
        loss_changes=changes,
        squared_gradient_norm=squared_norm,
        curvature=curvature,
        error_curvature=error_curvature,
        data=data,
    )
