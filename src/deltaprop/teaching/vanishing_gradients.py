"""The vanishing gradient, measured: per-layer statistics from epoch 0, over seeds and activations.

Going back one hidden layer, δ_l = (δ_{l+1} W_{l+1}ᵀ) ⊙ φ'(z_l), so

    ‖δ_l‖ ≤ ‖W_{l+1}‖₂ · max φ' · ‖δ_{l+1}‖        (max σ' = 1/4; tanh', relu': 1)

and from a layer `top` down to layer 2, ‖δ_2‖ / ‖δ_top‖ ≤ Π_{l=3}^{top} ‖W_l‖₂ · (max φ')^{top−2}.
`spectral_bound` is that product; its inverse is the smallest spread ‖δ_top‖ / ‖δ_2‖ the bound
guarantees (below 1: no guarantee at all). `spread` is the spread measured, from one history
row; `top` is the output layer L or, hidden layers only, L − 1.

A history row is one evaluation of a run (loop.py): "epoch", "train/loss" and
"grads/layer_{l}/{delta_norm, grad_b_norm, grad_W_rms, saturated}" (diagnostics.py; only the
hidden layers have "saturated"). `summarize` turns the members' histories of one sweep into the
table experiments/vanishing_gradients.py prints; everything here is pure (NumPy and JAX, no I/O).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deltaprop.network import Params, activation_named

LN2 = math.log(2.0)  # BCE of p = 1/2: the loss of a network that outputs the class balance

Row = Mapping[str, Any]


def layer_numbers(row: Row) -> list[int]:
    """The layers l = 2..L with statistics in `row`, in order."""
    found = {int(key.split("/")[1].split("_")[1]) for key in row if key.startswith("grads/layer_")}
    return sorted(found)


def hidden_layer_numbers(row: Row) -> list[int]:
    """The hidden layers 2..L−1 (those with a saturation statistic)."""
    return [layer for layer in layer_numbers(row) if f"grads/layer_{layer}/saturated" in row]


def _top_layer(row: Row, hidden_only: bool) -> int:
    return hidden_layer_numbers(row)[-1] if hidden_only else layer_numbers(row)[-1]


def spread(row: Row, hidden_only: bool = False) -> float:
    """‖δ_top‖ / ‖δ_2‖: how many times less error signal reaches the first hidden layer than
    the output layer (top = L) or, `hidden_only`, the last hidden layer (top = L − 1)."""
    top = _top_layer(row, hidden_only)
    return row[f"grads/layer_{top}/delta_norm"] / row["grads/layer_2/delta_norm"]


def bias_ratio(row: Row) -> float:
    """‖∂L/∂b_{L−1}‖ / ‖∂L/∂b_2‖: how many times slower the first hidden layer learns than the
    last (Nielsen's speed of learning, ch. 5)."""
    last = hidden_layer_numbers(row)[-1]
    return row[f"grads/layer_{last}/grad_b_norm"] / row["grads/layer_2/grad_b_norm"]


def plateau_end(history: Sequence[Row], margin: float = 0.05) -> int | None:
    """The first evaluated epoch whose train/loss is below ln 2 − margin: how long the network
    stayed on the plateau of a constant output; None if it never left it."""
    for row in history:
        if row["train/loss"] < LN2 - margin:
            return int(row["epoch"])
    return None


def spectral_bound(params: Params, activation: str = "sigmoid", hidden_only: bool = False
                   ) -> float:
    """Π_{l=3}^{top} ‖W_l‖₂ · (max φ')^{top−2}, the bound on ‖δ_2‖ / ‖δ_top‖ (top = L, or
    L − 1 when `hidden_only`).

    Args:
      params: [{"W": (n_{l−1}, n_l), "b": (n_l,)}] for l = 2..L.
      activation: the hidden φ (sigmoid | tanh | relu).
    """
    top = len(params) + 1 - int(hidden_only)  # the layer number of params[-1] is L = len + 1
    matrices = [np.asarray(params[layer - 2]["W"], np.float64) for layer in range(3, top + 1)]
    norms = [np.linalg.norm(matrix, 2) for matrix in matrices]  # largest singular value
    return float(np.prod(norms) * activation_named(activation).max_derivative ** (top - 2))


def over_members(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Median, min and max of the members' values (None: left out and counted as `missing`)."""
    known = np.array([value for value in values if value is not None], np.float64)
    if known.size == 0:
        return {"median": None, "min": None, "max": None, "missing": len(values)}
    return {"median": float(np.median(known)), "min": float(known.min()),
            "max": float(known.max()), "missing": len(values) - int(known.size)}


def summarize(
    name: str,
    histories: Sequence[Sequence[Row]],
    initial_params: Sequence[Params],
    activation: str = "sigmoid",
    margin: float = 0.05,
) -> dict[str, Any]:
    """One sweep's table row: at epoch 0 the spreads (hidden layers only and with the output
    layer) beside the spectral bound's guaranteed spread 1 / spectral_bound, the bias-gradient
    ratio at the first and the last evaluation, and the plateau's length; each as its median,
    min and max over the members.

    Args:
      name: the sweep's label (e.g. its activation).
      histories: each member's history, epoch 0 first.
      initial_params: each member's parameters at epoch 0, in the same order.
    """
    initial = [history[0] for history in histories]
    if any(row["epoch"] != 0 for row in initial):
        raise ValueError(f"{name}: every history must start at epoch 0 (the initialization)")
    guaranteed = {hidden: [1.0 / spectral_bound(params, activation, hidden)
                           for params in initial_params] for hidden in (True, False)}
    return {
        "name": name,
        "members": len(histories),
        "spread_hidden_at_init": over_members([spread(row, True) for row in initial]),
        "bound_hidden_at_init": over_members(guaranteed[True]),
        "spread_with_output_at_init": over_members([spread(row) for row in initial]),
        "bound_with_output_at_init": over_members(guaranteed[False]),
        "bias_ratio_at_init": over_members([bias_ratio(row) for row in initial]),
        "bias_ratio_at_end": over_members([bias_ratio(history[-1]) for history in histories]),
        "last_epoch": int(histories[0][-1]["epoch"]),
        "plateau_margin": margin,
        "plateau_end_epoch": over_members([plateau_end(history, margin) for history in histories]),
        "final_train_loss": over_members([history[-1]["train/loss"] for history in histories]),
    }


def format_summaries(summaries: Sequence[dict[str, Any]]) -> str:
    """The table as text, one line per sweep: median [min, max] over its members."""

    def cell(stats: dict[str, Any], digits: int = 3) -> str:
        if stats["median"] is None:
            return "never"
        text = f"{stats['median']:.{digits}g} [{stats['min']:.{digits}g}, {stats['max']:.{digits}g}]"
        return text + (f" ({stats['missing']} never)" if stats["missing"] else "")

    columns = [
        ("spread at init, hidden (bound)", "spread_hidden_at_init", "bound_hidden_at_init"),
        ("spread at init, with output (bound)", "spread_with_output_at_init",
         "bound_with_output_at_init"),
        ("|dL/db| last/first hidden: init", "bias_ratio_at_init", None),
        ("... at the last epoch", "bias_ratio_at_end", None),
        ("plateau ends (epoch)", "plateau_end_epoch", None),
        ("final train loss", "final_train_loss", None),
    ]
    note = ("median [min, max] over members; spread = ||delta_top|| / ||delta_2||; bound = the "
            "smallest spread prod ||W_l||_2 max(phi')^k guarantees (< 1: none)")
    lines = [note]
    for summary in summaries:
        lines.append(f"{summary['name']} ({summary['members']} members, epochs 0-"
                     f"{summary['last_epoch']}; the plateau ends below ln 2 - "
                     f"{summary['plateau_margin']:g}):")
        for title, key, bound in columns:
            text = cell(summary[key])
            if bound is not None:
                text += f"   (bound: >= {cell(summary[bound])})"
            lines.append(f"  {title:<36} {text}")
    return "\n".join(lines)
