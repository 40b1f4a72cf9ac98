"""Fully connected networks (hidden φ, sigmoid output) as bare pytrees.

Layers are numbered as in the textbook: layer 1 is the input, layers l = 2..L each hold a weight
matrix W_l of shape (n_{l-1}, n_l) and biases b_l of shape (n_l,). `params[i]` is layer l = i + 2:

    z_l = a_{l-1} W_l + b_l          a_1 = x
    a_l = φ(z_l)                     for the hidden layers l = 2..L-1 (model.activation)
    z_L                              the logits; the loss takes them directly (see losses.py)

The output stays a sigmoid, a_L = σ(z_L), whatever φ is. Each φ has its hand-written φ'(z)
beside it in one `Activation` entry (ACTIVATIONS), read off the saved a = φ(z) where it can be:

    sigmoid   φ = σ(z)          φ'(z) = a(1 − a)
    tanh      φ = tanh(z)       φ'(z) = 1 − a²
    relu      φ = max(z, 0)     φ'(z) = 1 where z > 0, else 0 (the subgradient 0 at z = 0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from deltaprop.choices import ActivationName, Init

Params = list[dict[str, jax.Array]]
INIT_SCHEMES = Init.values()


@dataclass(frozen=True)
class Activation:
    """One hidden activation: φ, its derivative φ' written by hand beside it, and the most φ'
    can be (how much |δ| can at most keep per layer, times ‖W‖: the vanishing-gradient bound)."""

    name: str
    phi: Callable[[jax.Array], jax.Array]  # a = φ(z)
    derivative: Callable[[jax.Array, jax.Array], jax.Array]  # φ'(z), from z and the saved a
    max_derivative: float  # max over z of φ'(z)

    def __str__(self) -> str:
        return self.name


def _sigmoid_derivative(z, a):
    return a * (1 - a)  # σ'(z) = σ(z)(1 − σ(z))


def _tanh_derivative(z, a):
    return 1 - a * a  # tanh'(z) = 1 − tanh²(z)


def _relu(z):
    return jnp.where(z > 0, z, 0)  # max(z, 0)


def _relu_derivative(z, a):
    return (z > 0).astype(a.dtype)  # 1 for z > 0, 0 for z ≤ 0 (as jax.grad of where)


SIGMOID = Activation("sigmoid", jax.nn.sigmoid, _sigmoid_derivative, max_derivative=0.25)
TANH = Activation("tanh", jnp.tanh, _tanh_derivative, max_derivative=1.0)
RELU = Activation("relu", _relu, _relu_derivative, max_derivative=1.0)
ACTIVATIONS = {entry.name: entry for entry in (SIGMOID, TANH, RELU)}  # by ActivationName


def activation_named(activation: str | Activation) -> Activation:
    """The entry for model.activation's name (an entry is returned as it is)."""
    if isinstance(activation, Activation):
        return activation
    if str(activation) not in ACTIVATIONS:
        raise ValueError(f"model.activation={str(activation)!r} must be one of "
                         f"{', '.join(ActivationName.values())}")
    return ACTIVATIONS[str(activation)]


def activate(activation: str | Activation, z: jax.Array) -> jax.Array:
    """a = φ(z) for the hidden activation `activation`."""
    return activation_named(activation).phi(z)


def activation_derivative(activation: str | Activation, z: jax.Array, a: jax.Array) -> jax.Array:
    """φ'(z) by hand, from z and the saved a = φ(z)."""
    return activation_named(activation).derivative(z, a)


def validate_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    """Check layer sizes [n_1 (inputs), n_2, ..., n_L (outputs)]; raise ValueError naming them."""
    sizes = tuple(int(n) for n in sizes)
    if len(sizes) < 2:
        raise ValueError(
            f"sizes={list(sizes)} must name at least two layers: inputs and outputs"
        )
    if any(n < 1 for n in sizes):
        raise ValueError(f"sizes={list(sizes)}: every layer size must be >= 1")
    return sizes


def init_params(
    key: jax.Array,
    sizes: Sequence[int],
    init: str = "xavier",
    dtype: DTypeLike = jnp.float32,
    scale: float | jax.Array = 1.0,
) -> Params:
    """Random weights; zero biases except with init="nielsen".

    Args:
      key: a PRNG key.
      sizes: [n_inputs, hidden..., n_outputs].
      init: "xavier" (Glorot uniform, W ~ U(±√(6/(n_in+n_out))), the usual choice for sigmoid)
        or "normal" (W ~ N(0, 1/n_in), as in Nielsen's network2.py) or "nielsen" (normal's W and
        b ~ N(0, 1): network2.py's default_weight_initializer, the init of his chapter 5).
      dtype: dtype of every leaf.
      scale: multiplies every parameter, so the std of each random draw (model.init_scale;
        a sweep's sweep.init_scale gives each member its own).

    Returns:
      [{"W": (n_{l-1}, n_l), "b": (n_l,)} for l = 2..L].
    """
    sizes = validate_sizes(sizes)
    if init not in INIT_SCHEMES:
        raise ValueError(f"init={init!r} must be one of {', '.join(INIT_SCHEMES)}")
    keys = jax.random.split(key, len(sizes) - 1)
    params = []
    for layer_key, n_in, n_out in zip(keys, sizes[:-1], sizes[1:]):
        if init == "xavier":
            limit = (6.0 / (n_in + n_out)) ** 0.5
            W = jax.random.uniform(layer_key, (n_in, n_out), dtype, -limit, limit)
        else:
            W = jax.random.normal(layer_key, (n_in, n_out), dtype) / n_in**0.5
        b = jnp.zeros((n_out,), dtype)
        if init == "nielsen":  # same W as "normal" (the same layer key), and b ~ N(0, 1)
            b = jax.random.normal(jax.random.fold_in(layer_key, 1), (n_out,), dtype)
        params.append({"W": W * jnp.asarray(scale, dtype), "b": b * jnp.asarray(scale, dtype)})
    return params


def layer_sizes(params: Params) -> tuple[int, ...]:
    """[n_1, ..., n_L] read off the weight shapes."""
    return (params[0]["W"].shape[0],) + tuple(layer["W"].shape[1] for layer in params)


def check_batch(params: Params, x: ArrayLike, y: ArrayLike | None = None) -> None:
    """Raise ValueError when x or y do not fit the network (shapes are static, so this is jit-safe).

    Args:
      x: (N, n_1).
      y: (N, n_L) of 0/1 targets, or None.
    """
    if not params:
        raise ValueError("params is empty: a network needs at least one layer after the input")
    sizes = validate_sizes(layer_sizes(params))
    x_shape = jnp.shape(x)
    if len(x_shape) != 2 or x_shape[1] != sizes[0]:
        raise ValueError(
            f"x has shape {x_shape}, but the network with sizes {list(sizes)} expects "
            f"(N, {sizes[0]})"
        )
    if y is not None and jnp.shape(y) != (x_shape[0], sizes[-1]):
        raise ValueError(
            f"y has shape {jnp.shape(y)}, but x has shape {x_shape} and the network has "
            f"{sizes[-1]} output(s): expected y of shape {(x_shape[0], sizes[-1])}"
        )


def linear(a: jax.Array, layer: dict[str, jax.Array], matmul_dtype: DTypeLike | None = None):
    """z = a W + b. With matmul_dtype (e.g. bf16) the product runs in that dtype and accumulates
    in the parameters' dtype: master weights stay float32."""
    if matmul_dtype is None:
        return a @ layer["W"] + layer["b"]
    product = jnp.matmul(
        a.astype(matmul_dtype),
        layer["W"].astype(matmul_dtype),
        preferred_element_type=layer["W"].dtype,
    )
    return product + layer["b"]


def forward(
    params: Params,
    x: ArrayLike,
    matmul_dtype: DTypeLike | None = None,
    activation: str | Activation = "sigmoid",
) -> jax.Array:
    """Logits z_L of the output layer.

    Args:
      params: from `init_params`.
      x: (N, n_1).
      matmul_dtype: optional lower precision for the matrix products (bf16).
      activation: φ of the hidden layers, a name or an `Activation` entry.

    Returns:
      (N, n_L) logits; σ(z_L) are the predicted probabilities.
    """
    check_batch(params, x)
    a, phi = jnp.asarray(x, params[0]["W"].dtype), activation_named(activation).phi
    for layer in params[:-1]:
        a = phi(linear(a, layer, matmul_dtype))  # a_l = φ(a_{l-1} W_l + b_l)
    return linear(a, params[-1], matmul_dtype)  # z_L = a_{L-1} W_L + b_L


def predict_proba(params: Params, x: ArrayLike, activation: str | Activation = "sigmoid") -> jax.Array:
    """a_L = σ(z_L), shape (N, n_L)."""
    return jax.nn.sigmoid(forward(params, x, activation=activation))
