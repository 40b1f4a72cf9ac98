"""Nielsen's speed of learning: ‖∂C/∂b^l‖ per hidden layer, measured by the hand-written pass.

"Neural Networks and Deep Learning", chapter 5, calls ‖∂C/∂b^l‖ the speed at which hidden layer l
learns, and measures it at initialization (MNIST, 1000 training images, 10 sigmoid outputs with
cross-entropy, W ~ N(0, 1/n_in) and b ~ N(0, 1): model.init=nielsen). The earlier layers learn
slower: about 4.4× in [784, 30, 30, 10], 24× with three hidden layers, 95× with four.

His cost and ours differ by a constant. He averages over the N examples a per-example cost
C_x summed over the n_L outputs, C = (1/N) Σ_x Σ_j BCE(z_j, y_j); our L averages over all N·n_L
elements (backprop.py). So C = n_L·L and, layer by layer,

    ∂C/∂b^l = n_L · ∂L/∂b_l = n_L · Σ_batch δ_l        (δ_l = ∂L/∂z_l of the mean loss)

`layer_speeds` is pure (jax only); `speed_table` and `format_table` build and print the table;
the command `deltaprop-speed-of-learning` (cli/teaching.py) runs them on the configured data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from deltaprop.backprop import manual_grad
from deltaprop.network import Params

log = logging.getLogger(__name__)

# Nielsen's published ‖∂C/∂b^l‖ (chapter 5), keyed by the hidden widths, first hidden layer first.
NIELSEN_SPEEDS: dict[tuple[int, ...], tuple[float, ...]] = {
    (30, 30): (0.07, 0.31),
    (30, 30, 30): (0.012, 0.060, 0.283),
    (30, 30, 30, 30): (0.003, 0.017, 0.070, 0.285),
}


class SpeedRow(NamedTuple):
    """One hidden layer of one network: its speed of learning over the seeds."""

    hidden: tuple[int, ...]  # the network's hidden widths
    layer: int  # the textbook's l: 2 is the first hidden layer
    epoch: int  # 0: at initialization
    speed: float  # mean over seeds of ‖∂C/∂b^l‖ = n_L·‖∂L/∂b_l‖
    spread: float  # standard deviation over seeds
    nielsen: float | None  # his published value (at initialization), if he measured this network


def layer_speeds(params: Params, x: ArrayLike, y: ArrayLike) -> jax.Array:
    """‖∂C/∂b^l‖ for each hidden layer l = 2..L−1, by manual_grad.

    Args:
      params: sigmoid network [{"W": (n_{l−1}, n_l), "b": (n_l,)}], l = 2..L.
      x: (N, n_1) inputs; y: (N, n_L) 0/1 targets.

    Returns:
      (L − 2,) first hidden layer first.
    """
    grads = manual_grad(params, x, y)
    n_outputs = jnp.shape(y)[1]
    # ∂C/∂b^l = n_L·∂L/∂b_l: Nielsen's C sums the n_L outputs where our L averages them.
    return jnp.stack([n_outputs * jnp.linalg.norm(layer["b"]) for layer in grads[:-1]])


def speed_table(
    x: ArrayLike,
    y: ArrayLike,
    hidden_layers: Sequence[Sequence[int]],
    seeds: Sequence[int],
    params_of: Callable[[int, list[int]], Params] | None = None,
    epoch: int = 0,
    dtype: DTypeLike = jnp.float64,
    init: str = "nielsen",
) -> list[SpeedRow]:
    """One row per hidden layer per network: ‖∂C/∂b^l‖ averaged over `seeds`.

    Args:
      x: (N, n_1) inputs; y: (N, n_L) 0/1 targets (the images the gradient is averaged over).
      hidden_layers: the hidden widths of each network, e.g. [[30, 30], [30, 30, 30]].
      seeds: one network per seed.
      params_of: (seed, sizes) -> the params measured; default: the initial params of a run
        with that seed and model.init=`init` (population.initial_params).
      epoch: recorded in the rows (0: at initialization).
      dtype: of x, y and the params.
      init: the initialization, when `params_of` is None.
    """
    from deltaprop.population import initial_params

    if params_of is None:  # (eager: a jitted, vmapped init compiles for seconds per network)
        params_of = lambda seed, sizes: initial_params(seed, sizes, init, dtype)
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    # One program per network: the seeds' params stacked on a leading axis, vmapped.
    speeds_of = jax.jit(jax.vmap(layer_speeds, in_axes=(0, None, None)))
    rows = []
    for hidden in hidden_layers:
        hidden = tuple(int(width) for width in hidden)
        sizes = [x.shape[1], *hidden, y.shape[1]]
        stacked = jax.tree.map(lambda *leaves: jnp.asarray(np.stack(leaves), dtype),
                               *(params_of(seed, sizes) for seed in seeds))
        speeds = np.asarray(speeds_of(stacked, x, y))  # (seeds, hidden layers)
        published = NIELSEN_SPEEDS.get(hidden) if epoch == 0 else None
        for index in range(len(hidden)):
            rows.append(SpeedRow(
                hidden=hidden, layer=index + 2, epoch=epoch,
                speed=float(speeds[:, index].mean()), spread=float(speeds[:, index].std()),
                nielsen=None if published is None else published[index],
            ))
    return rows


def first_to_last_ratio(rows: Sequence[SpeedRow], hidden: tuple[int, ...], epoch: int = 0,
                        published: bool = False) -> float:
    """‖∂C/∂b^{L−1}‖ / ‖∂C/∂b^2‖ of one network: how many times slower its first hidden layer
    learns than its last (Nielsen's value with `published`)."""
    values = [row.nielsen if published else row.speed
              for row in rows if row.hidden == hidden and row.epoch == epoch]
    return values[-1] / values[0]


def format_table(rows: Sequence[SpeedRow]) -> str:
    """The table as text: network, layer, measured speed ± spread, Nielsen's value, and each
    network's last/first ratio."""
    header = (f"{'network (hidden)':<22} {'epoch':>5} {'layer':>5} {'||dC/db^l||':>12} "
              f"{'± std':>9} {'Nielsen':>8}")
    note = "||dC/db^l|| = n_L·||dL/db_l||: Nielsen's C sums the n_L outputs, our L averages them"
    lines = [note, header, "-" * len(header)]
    networks = list(dict.fromkeys((row.hidden, row.epoch) for row in rows))
    for hidden, epoch in networks:
        network = [row for row in rows if row.hidden == hidden and row.epoch == epoch]
        for row in network:
            published = "" if row.nielsen is None else f"{row.nielsen:.3f}"
            lines.append(f"{list(hidden)!s:<22} {epoch:>5} {row.layer:>5} {row.speed:>12.4g} "
                         f"{row.spread:>9.2g} {published:>8}".rstrip())
        ratio = f"last/first hidden layer: {first_to_last_ratio(rows, hidden, epoch):.1f}x"
        if network[0].nielsen is not None:
            ratio += f" (Nielsen {first_to_last_ratio(rows, hidden, epoch, published=True):.1f}x)"
        lines.append(f"{'':<22} {ratio}")
    return "\n".join(lines)
