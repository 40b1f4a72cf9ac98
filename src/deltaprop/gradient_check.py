"""Gradient check: the hand-written pass against jax.grad and against finite differences.

Each leaf (W_l, b_l) is compared by the relative error

    err(g1, g2) = ‖g1 − g2‖ / max(‖g1‖ + ‖g2‖, tiny)

in float64. Two exact gradients (manual vs autodiff) agree to ~1e-12; finite differences use
the fourth-order central stencil

    ∂L/∂θ_i ≈ (−L(θ + 2εe_i) + 8L(θ + εe_i) − 8L(θ − εe_i) + L(θ − 2εe_i)) / 12ε

whose truncation error is O(ε⁴), so ε = 1e-3 leaves mostly float64 rounding (~1e-13 absolute).
A leaf whose exact gradient is 0 has only rounding noise to compare, and its relative error is
meaningless (noise / noise ~ 1): a row also passes when ‖g1 − g2‖ is under an absolute floor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from deltaprop.backprop import manual_grad
from deltaprop.losses import loss_fn
from deltaprop.network import Params, check_batch
from deltaprop.precision import float64_scope

TOLERANCE_AUTODIFF = 1e-10
TOLERANCE_FINITE_DIFFERENCES = 1e-6
FINITE_DIFFERENCE_STEP = 1e-3
ABSOLUTE_FLOOR_AUTODIFF = 1e-14  # ‖g1 − g2‖ below this passes whatever the relative error
ABSOLUTE_FLOOR_FINITE_DIFFERENCES = 1e-11
_TINY = 1e-300


def _agrees(g1: ArrayLike, g2: ArrayLike, tolerance: float, floor: float) -> tuple[float, bool]:
    """(relative error, passed): passed when relative ≤ tolerance or absolute ≤ floor."""
    error = relative_error(g1, g2)
    absolute = float(np.linalg.norm(np.asarray(g1, np.float64) - np.asarray(g2, np.float64)))
    return error, error <= tolerance or absolute <= floor


def relative_error(g1: ArrayLike, g2: ArrayLike) -> float:
    """‖g1 − g2‖ / max(‖g1‖ + ‖g2‖, tiny); 0 when both are zero."""
    g1, g2 = np.asarray(g1, np.float64), np.asarray(g2, np.float64)
    denominator = max(np.linalg.norm(g1) + np.linalg.norm(g2), _TINY)
    return float(np.linalg.norm(g1 - g2) / denominator)


@dataclass(frozen=True)
class LeafCheck:
    """One row of the report: one leaf of one layer."""

    layer: int  # textbook numbering, l = 2..L
    leaf: str  # "W" or "b"
    shape: tuple[int, ...]
    norm: float  # ‖∂L/∂leaf‖ from manual_grad
    error_autodiff: float
    error_finite_differences: float
    passed: bool


@dataclass(frozen=True)
class GradcheckReport:
    rows: list[LeafCheck]
    tolerance_autodiff: float
    tolerance_finite_differences: float

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def table(self) -> tuple[list[str], list[list]]:
        """(columns, rows) of the report, for a W&B table."""
        columns = ["layer", "leaf", "shape", "grad_norm", "err_vs_jax_grad",
                   "err_vs_finite_diff", "pass"]
        rows = [[row.layer, row.leaf, str(row.shape), row.norm, row.error_autodiff,
                 row.error_finite_differences, row.passed] for row in self.rows]
        return columns, rows

    def format_table(self) -> str:
        header = (
            f"{'layer':>5} {'leaf':>4} {'shape':>10} {'‖grad‖':>10} "
            f"{'vs jax.grad':>12} {'vs finite diff':>14}  result"
        )
        lines = [header, "-" * len(header)]
        for row in self.rows:
            lines.append(
                f"{row.layer:>5} {row.leaf:>4} {row.shape!s:>10} {row.norm:>10.3e} "
                f"{row.error_autodiff:>12.2e} {row.error_finite_differences:>14.2e}  "
                f"{'pass' if row.passed else 'FAIL'}"
            )
        lines.append(
            f"tolerances: jax.grad {self.tolerance_autodiff:.0e}, finite differences "
            f"{self.tolerance_finite_differences:.0e} (relative error, float64) -> "
            f"{'all passed' if self.passed else 'FAILED'}"
        )
        return "\n".join(lines)


_STENCIL = ((2.0, -1.0), (1.0, 8.0), (-1.0, -8.0), (-2.0, 1.0))  # (multiple of ε, weight)


def finite_difference_grad(
    params: Params, x: ArrayLike, y: ArrayLike, step: float = FINITE_DIFFERENCE_STEP
) -> Params:
    """∂L/∂params by the fourth-order central stencil, one direction per parameter.

    All 4·P perturbed losses run one after another in a single `lax.map` loop whose body is one
    loss evaluation: a small program that compiles fast (vmapping the directions compiles ~10×
    slower on CPU), and the loop itself takes microseconds per evaluation.
    """
    flat, unravel = ravel_pytree(params)
    multiples = jnp.asarray([m for m, _ in _STENCIL], flat.dtype)
    weights = jnp.asarray([w for _, w in _STENCIL], flat.dtype)

    @jax.jit
    def derivatives(flat, x, y):
        def perturbed_loss(k):  # k = s·P + i: stencil point s, direction i
            theta = flat.at[k % flat.size].add(multiples[k // flat.size] * step)
            return loss_fn(unravel(theta), x, y)

        losses = jax.lax.map(perturbed_loss, jnp.arange(4 * flat.size)).reshape(4, flat.size)
        return weights @ losses / (12 * step)

    return unravel(derivatives(flat, jnp.asarray(x), jnp.asarray(y)))


def gradcheck(
    params: Params,
    x: ArrayLike,
    y: ArrayLike,
    tolerance_autodiff: float = TOLERANCE_AUTODIFF,
    tolerance_finite_differences: float = TOLERANCE_FINITE_DIFFERENCES,
    gradient_fn: Callable[[Params, jax.Array, jax.Array], Params] = manual_grad,
) -> GradcheckReport:
    """Compare manual_grad with jax.grad and with finite differences, per layer and leaf.

    Everything runs in float64 (params and data are cast up), whatever the training precision.

    Args:
      params: from `init_params`.
      x: (N, n_1) inputs; keep N and the network small, finite differences cost 4 passes per
        parameter.
      y: (N, n_L) targets in {0, 1}.
      gradient_fn: the gradient under test, (params, x, y) -> grads; `manual_grad` by default.
    """
    check_batch(params, x, y)
    with float64_scope():
        params = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float64), params)
        x, y = jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)
        both = jax.jit(lambda p, x, y: (gradient_fn(p, x, y), jax.grad(loss_fn)(p, x, y)))
        manual, autodiff = both(params, x, y)  # one compiled program for the two

        numeric = finite_difference_grad(params, x, y)
        rows = []
        for index, (m, a, n) in enumerate(zip(manual, autodiff, numeric)):
            for leaf in ("W", "b"):
                error_autodiff, passed_autodiff = _agrees(
                    m[leaf], a[leaf], tolerance_autodiff, ABSOLUTE_FLOOR_AUTODIFF
                )
                error_numeric, passed_numeric = _agrees(
                    m[leaf], n[leaf], tolerance_finite_differences,
                    ABSOLUTE_FLOOR_FINITE_DIFFERENCES,
                )
                rows.append(
                    LeafCheck(
                        layer=index + 2,
                        leaf=leaf,
                        shape=tuple(m[leaf].shape),
                        norm=float(np.linalg.norm(np.asarray(m[leaf]))),
                        error_autodiff=error_autodiff,
                        error_finite_differences=error_numeric,
                        passed=passed_autodiff and passed_numeric,
                    )
                )
    return GradcheckReport(rows, tolerance_autodiff, tolerance_finite_differences)
