"""Backpropagation by hand: the δ recursion for a sigmoid output with BCE or the quadratic cost.

Row form, as the code computes it: one example per row, a_l and z_l of shape (N, n_l), and
W_l of shape (n_{l−1}, n_l), so that z_l = a_{l−1} W_l + b_l. With L = mean over N·n_L
elements of l(z_L, y) (losses.py), define δ_l = ∂L/∂z_l, the error of the MEAN loss. Then

    δ_L = (a_L − y) / (N·n_L)                 loss=bce: σ' cancels, dl/dz = σ(z) − y
    δ_L = (a_L − y) ⊙ σ'(z_L) / (N·n_L)       loss=mse: l = ½(a − y)², σ'(z_L) = a_L(1 − a_L)
    δ_l = (δ_{l+1} W_{l+1}ᵀ) ⊙ a_l(1 − a_l)    σ'(z_l) = a_l(1 − a_l), read off the saved a_l
    δ_l = (δ_{l+1} W_{l+1}ᵀ) ⊙ φ'(z_l)         model.activation=tanh|relu: φ' in network.py
    ∂L/∂W_l = a_{l−1}ᵀ δ_l                     (N-sums: the 1/N of the mean lives in δ_L)
    ∂L/∂b_l = Σ_batch δ_l

Two errors, two symbols. The textbook (Nielsen's BP1–BP4) works with one example x as a column
vector, weights w^l of shape (n_l, n_{l−1}) with w^l_{ji} joining unit i of layer l − 1 to
unit j of layer l (so W_l[i, j] = w^l_{ji}: W_l = (w^l)ᵀ), and the per-example error
δ^l = ∂C_x/∂z^l (superscript), C_x the cross-entropy of x summed over the outputs:

    δ^L = a^L − y                              (BP1, with cross-entropy)
    δ^l = ((w^{l+1})ᵀ δ^{l+1}) ⊙ σ'(z^l)         (BP2)
    ∂C_x/∂b^l_j = δ^l_j,  ∂C_x/∂w^l_{ji} = a^{l−1}_i δ^l_j     (BP3, BP4)

and averages over the N examples. The two are the same numbers, rescaled:
δ_l[n, j] = δ^l_j(x_n) / (N·n_L), and ∂L/∂W_l[i, j] = (1/N) Σ_n ∂C_{x_n}/∂w^l_{ji} / n_L
(equal when n_L = 1). docs/backprop.md (Notation) has the full index map.
No jax.grad, vjp, jvp or linearize is used in this module; `loss_fn_manual` wires the pass into
`jax.custom_vjp` so optax and `jax.grad` can train on it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from deltaprop.losses import Cost, cost_named
from deltaprop.network import Activation, Params, activation_named, check_batch, linear


class BackpropTrace(NamedTuple):
    """Every quantity of one forward and backward pass, for diagnostics and teaching.

    Lists run over layers l = 2..L (index 0 is layer 2), except `activations`, which starts at
    a_1 = x (index 0 is layer 1).
    """

    loss: jax.Array  # scalar mean cost (BCE or quadratic)
    pre_activations: list[jax.Array]  # z_l, (N, n_l); z_L are the logits
    activations: list[jax.Array]  # a_l = φ(z_l) (hidden), a_L = σ(z_L), (N, n_l); a_1 = x
    deltas: list[jax.Array]  # δ_l = ∂L/∂z_l of the mean loss, (N, n_l); textbook δ^l / (N·n_L)
    grads: Params  # [{"W": ∂L/∂W_l, "b": ∂L/∂b_l}]


class Products(NamedTuple):
    """The products the recursion needs, for one memory layout of the arrays.

    The recursion below is written once; a layout (the plain one here, or members on the last
    axis in packed.py) supplies only how to compute, for its arrays,

        linear(a, layer)        z = a W + b            (N, n_in) -> (N, n_out)
        backward(δ, W)          δ Wᵀ                   (N, n_out) -> (N, n_in)
        weight_gradient(a, δ)   aᵀ δ, summed over N    -> W's shape
        batch_sum(δ)            Σ_batch δ              -> b's shape

    Axis 0 is the batch and axis 1 the units in every layout.
    """

    linear: Callable[[jax.Array, dict[str, jax.Array]], jax.Array]
    backward: Callable[[jax.Array, jax.Array], jax.Array]
    weight_gradient: Callable[[jax.Array, jax.Array], jax.Array]
    batch_sum: Callable[[jax.Array], jax.Array]


def _matmul(a: jax.Array, b: jax.Array, matmul_dtype: DTypeLike | None) -> jax.Array:
    if matmul_dtype is None:
        return a @ b
    return jnp.matmul(
        a.astype(matmul_dtype), b.astype(matmul_dtype), preferred_element_type=a.dtype
    )


def _batch_contraction(
    a: jax.Array, delta: jax.Array, matmul_dtype: DTypeLike | None
) -> jax.Array:
    """aᵀ δ summed over the batch, without materializing aᵀ (XLA then emits no transpose copy)."""
    accumulate = a.dtype
    if matmul_dtype is not None:
        a, delta = a.astype(matmul_dtype), delta.astype(matmul_dtype)
    return jnp.einsum("ni,nj->ij", a, delta, preferred_element_type=accumulate)


def dense_products(matmul_dtype: DTypeLike | None = None) -> Products:
    """The products for plain arrays: a (N, n), W (n_in, n_out); bf16 operands if asked."""
    return Products(
        linear=partial(linear, matmul_dtype=matmul_dtype),
        backward=lambda delta, W: _matmul(delta, W.T, matmul_dtype),
        weight_gradient=partial(_batch_contraction, matmul_dtype=matmul_dtype),
        batch_sum=lambda delta: jnp.sum(delta, axis=0),
    )


def forward_pass(
    params: Params, x: jax.Array, products: Products, activation: str | Activation = "sigmoid"
) -> tuple[list[jax.Array], list[jax.Array]]:
    """([z_2, ..., z_L], [a_1 = x, a_2, ..., a_L]) with the layout's products."""
    # Forward: z_l = a_{l-1} W_l + b_l, a_l = φ(z_l) (a_L = σ(z_L)), keeping both for backward.
    phi = activation_named(activation).phi
    activations, pre_activations = [x], []
    for index, layer in enumerate(params):
        z = products.linear(activations[-1], layer)
        pre_activations.append(z)
        output_layer = index == len(params) - 1
        activations.append(jax.nn.sigmoid(z) if output_layer else phi(z))
    return pre_activations, activations


def mean_loss(logits: jax.Array, y: jax.Array, loss: str | Cost = "bce") -> jax.Array:
    """Mean cost over the batch and output axes (0, 1): a scalar, or one per member."""
    return jnp.mean(cost_named(loss).elementwise(logits, y), axis=(0, 1))


def backprop_trace(
    params: Params,
    x: ArrayLike,
    y: ArrayLike,
    matmul_dtype: DTypeLike | None = None,
    products: Products | None = None,
    loss: str | Cost = "bce",
    activation: str | Activation = "sigmoid",
) -> BackpropTrace:
    """One forward pass that saves z_l and a_l, then the δ recursion from layer L down to 2.

    Args:
      params: [{"W": (n_{l-1}, n_l), "b": (n_l,)}] for l = 2..L.
      x: (N, n_1) inputs.
      y: (N, n_L) targets in {0, 1}.
      matmul_dtype: optional lower precision (bf16) for the matrix products only.
      products: another layout's products (packed.py); its arrays keep their extra axes, and
        the loss is then one mean per member. Default: `dense_products(matmul_dtype)`.
      loss: the cost, "bce" or "mse" or its `losses.Cost` entry.
      activation: φ of the hidden layers, a name or its `network.Activation` entry; the
        output is always σ.

    Returns:
      A BackpropTrace; `.grads` has exactly the structure of `params`.
    """
    if products is None:
        check_batch(params, x, y)
        products = dense_products(matmul_dtype)
    cost, activation = cost_named(loss), activation_named(activation)
    dtype = params[0]["W"].dtype
    x = jnp.asarray(x, dtype)
    y = jnp.asarray(y, dtype)
    pre_activations, activations = forward_pass(params, x, products, activation)
    logits = pre_activations[-1]
    mean = mean_loss(logits, y, cost)
    n_elements = logits.shape[0] * logits.shape[1]  # N·n_L (per member, in packed layouts)

    # δ_L = (dl/dz_L) / (N·n_L): the derivative of the mean cost with respect to the logits
    # (the textbook's per-example δ^L, BP1, divided by N·n_L); bce: a_L − y,
    # mse: (a_L − y) ⊙ σ'(z_L) (losses.Cost.output_delta).
    delta = cost.output_delta(logits, activations[-1], y) / n_elements
    deltas = [delta]
    for i in range(len(params) - 1, 0, -1):  # params[i] is layer l+1; we compute δ_l, l = i+1
        # δ_l = (δ_{l+1} W_{l+1}ᵀ) ⊙ φ'(z_l)     (BP2 transposed: W_{l+1} = (w^{l+1})ᵀ);
        # sigmoid: φ'(z_l) = a_l(1 − a_l) from the saved a_l = activations[i]
        derivative = activation.derivative(pre_activations[i - 1], activations[i])
        delta = products.backward(delta, params[i]["W"]) * derivative
        deltas.insert(0, delta)

    grads = [
        {
            "W": products.weight_gradient(a_prev, delta),  # ∂L/∂W_l = a_{l−1}ᵀ δ_l   (BP4)
            "b": products.batch_sum(delta),  # ∂L/∂b_l = Σ_batch δ_l   (BP3)
        }
        for a_prev, delta in zip(activations[:-1], deltas)
    ]
    return BackpropTrace(mean, pre_activations, activations, deltas, grads)


def manual_value_and_grad(
    params: Params,
    x: ArrayLike,
    y: ArrayLike,
    matmul_dtype: DTypeLike | None = None,
    products: Products | None = None,
    loss: str | Cost = "bce",
    activation: str | Activation = "sigmoid",
) -> tuple[jax.Array, Params]:
    """(loss, gradients) from one hand-written forward and backward pass."""
    trace = backprop_trace(params, x, y, matmul_dtype, products, loss, activation)
    return trace.loss, trace.grads


def manual_grad(
    params: Params,
    x: ArrayLike,
    y: ArrayLike,
    matmul_dtype: DTypeLike | None = None,
    loss: str | Cost = "bce",
    activation: str | Activation = "sigmoid",
) -> Params:
    """∂L/∂params by the δ recursion; same structure as `params`. Jit-compatible.

    Args:
      params: from `init_params`.
      x: (N, n_1).
      y: (N, n_L) targets in {0, 1}.
      loss: "bce" or "mse"; activation: the hidden φ (see `backprop_trace`).
    """
    return backprop_trace(params, x, y, matmul_dtype, loss=loss, activation=activation).grads


@jax.custom_vjp
def loss_fn_manual(params: Params, x: ArrayLike, y: ArrayLike) -> jax.Array:
    """`loss_fn` whose backward pass is `manual_grad`: jax.grad and optax run on our δ's.
    (BCE with sigmoid hidden layers, the defaults of `loss_fn`.)"""
    return backprop_trace(params, x, y).loss


def _loss_fn_manual_forward(params, x, y):
    trace = backprop_trace(params, x, y)
    # Cotangents of the other inputs, also by hand: ∂L/∂x = δ_2 W_2ᵀ, ∂L/∂y = −z_L / (N·n_L).
    input_grad = (trace.deltas[0] @ params[0]["W"].T).astype(jnp.result_type(x))
    logits = trace.pre_activations[-1]
    label_grad = (-logits / logits.size).astype(jnp.result_type(y))
    return trace.loss, (trace.grads, input_grad, label_grad)


def _loss_fn_manual_backward(residuals, loss_cotangent):
    grads, input_grad, label_grad = residuals
    scale = lambda g: loss_cotangent * g
    return jax.tree.map(scale, grads), scale(input_grad), scale(label_grad)


loss_fn_manual.defvjp(_loss_fn_manual_forward, _loss_fn_manual_backward)
