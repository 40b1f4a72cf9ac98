"""Deliberately wrong backward passes, a teaching aid for the gradient check.

`python experiments/gradcheck.py gradcheck.inject=BUG` checks `buggy_grad` instead of the correct
`deltaprop.backprop.manual_grad`, so a learner sees which rows of the table fail, and by how much,
for three classic mistakes. Each is one line changed in a copy of the δ recursion (backprop.py
keeps the only correct one):

    none              the correct recursion
    drop_sigma_prime  δ_l = δ_{l+1} W_{l+1}ᵀ, the ⊙ a_l(1 − a_l) forgotten, in the hidden layer
                      closest to the output (l = L − 1): layers 2..L−1 fail, layer L passes
    missing_mean      δ_L = (a_L − y) / n_L, the 1/N of the batch mean forgotten: every
                      gradient N× too large, every row fails
    transposed_w      δ_l = (δ_{l+1} W_{l+1}) ⊙ a_l(1 − a_l), the ᵀ forgotten; it only runs
                      when W_{l+1} is square, so it goes in the highest layer with a square
                      W_{l+1} (l + 1 ≥ 3): layers 2..l fail, the layers above pass

A wrong δ_l spoils ∂L/∂W_l and ∂L/∂b_l and, through the recursion, every layer below it; the
layers above it never see it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import jax.numpy as jnp
from jax.typing import ArrayLike

from deltaprop.backprop import dense_products, forward_pass, manual_grad
from deltaprop.choices import Bug
from deltaprop.errors import InputError
from deltaprop.network import Params


def bug_layer(bug: Bug | str, sizes: Sequence[int]) -> int:
    """The layer l whose δ_l the bug computes wrongly, for a network of layer sizes `sizes`.

    Raises:
      InputError: the network has no place for the bug (no hidden layer; no square W).
    """
    bug, last = Bug(bug), len(sizes)  # layers are numbered 1..L, 1 the input
    if bug in (Bug.none, Bug.missing_mean):
        return last
    if last < 3:
        raise InputError(f"gradcheck.inject={bug} needs a hidden layer; model.hidden is empty")
    if bug is Bug.drop_sigma_prime:
        return last - 1
    shapes = {layer: (sizes[layer - 2], sizes[layer - 1]) for layer in range(3, last + 1)}
    square = [layer for layer, (n_in, n_out) in shapes.items() if n_in == n_out]
    if not square:
        listed = ", ".join(f"W_{layer} {shape}" for layer, shape in shapes.items())
        raise InputError(
            f"gradcheck.inject={bug} needs a square W_{{l+1}} (δ_{{l+1}} W_{{l+1}} has the shape "
            f"of δ_l only then), but the network has {listed}; try model.hidden=[3,3]"
        )
    return square[-1] - 1


def describe_bug(bug: Bug | str, layer: int) -> str:
    """One line: the wrong equation, for the report's heading."""
    here, above = layer, layer + 1
    return {
        Bug.none: "none",
        Bug.drop_sigma_prime: f"δ_{here} = δ_{above} W_{above}ᵀ (⊙ a_{here}(1 − a_{here}) dropped)",
        Bug.missing_mean: f"δ_{here} = (a_{here} − y) / n_{here} (the 1/N of the mean missing)",
        Bug.transposed_w: (f"δ_{here} = (δ_{above} W_{above}) ⊙ a_{here}(1 − a_{here}) "
                           f"(W_{above} without its ᵀ)"),
    }[Bug(bug)]


def buggy_grad(params: Params, x: ArrayLike, y: ArrayLike, bug: Bug | str, layer: int) -> Params:
    """`manual_grad` with `bug` in the δ of `layer` (from `bug_layer`); x: (N, n_1), y: (N, n_L)."""
    bug, dtype = Bug(bug), params[0]["W"].dtype
    _, activations = forward_pass(params, jnp.asarray(x, dtype), dense_products())
    y = jnp.asarray(y, dtype)
    n, n_outputs = y.shape
    if bug is Bug.missing_mean:
        delta = (activations[-1] - y) / n_outputs  # BUG: δ_L = (a_L − y) / n_L
    else:
        delta = (activations[-1] - y) / (n * n_outputs)  # δ_L = (a_L − y) / (N·n_L)
    deltas = [delta]
    for i in range(len(params) - 1, 0, -1):  # params[i] is layer l+1; we compute δ_l, l = i+1
        a, W, here = activations[i], params[i]["W"], i + 1 == layer
        if here and bug is Bug.drop_sigma_prime:
            delta = delta @ W.T  # BUG: δ_l = δ_{l+1} W_{l+1}ᵀ
        elif here and bug is Bug.transposed_w:
            delta = (delta @ W) * (a * (1 - a))  # BUG: δ_l = (δ_{l+1} W_{l+1}) ⊙ a_l(1 − a_l)
        else:
            delta = (delta @ W.T) * (a * (1 - a))  # δ_l = (δ_{l+1} W_{l+1}ᵀ) ⊙ a_l(1 − a_l)
        deltas.insert(0, delta)
    # ∂L/∂W_l = a_{l−1}ᵀ δ_l,  ∂L/∂b_l = Σ_batch δ_l
    return [{"W": a_prev.T @ delta, "b": jnp.sum(delta, axis=0)}
            for a_prev, delta in zip(activations[:-1], deltas)]


def gradient_with_bug(
    bug: Bug | str, sizes: Sequence[int]
) -> tuple[Callable[[Params, ArrayLike, ArrayLike], Params], int]:
    """(the gradient (params, x, y) -> grads with `bug` injected, the layer it is in);
    `manual_grad` itself for Bug.none. Raises InputError as `bug_layer`."""
    layer = bug_layer(bug, sizes)
    if Bug(bug) is Bug.none:
        return manual_grad, layer
    return partial(buggy_grad, bug=Bug(bug), layer=layer), layer
