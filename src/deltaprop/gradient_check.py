"""Gradient check: the hand-written pass against jax.grad and against finite differences.

Each leaf (W_l, b_l) is compared by the relative error

    err(g1, g2) = ‖g1 − g2‖ / max(‖g1‖ + ‖g2‖, tiny)

in float64. Two exact gradients (manual vs autodiff) agree to ~1e-12; finite differences use
the fourth-order central stencil

    ∂L/∂θ_i ≈ (−L(θ + 2εe_i) + 8L(θ + εe_i) − 8L(θ − εe_i) + L(θ − 2εe_i)) / 12ε

whose truncation error is O(ε⁴), so ε = 1e-3 leaves mostly float64 rounding (~1e-13 absolute).
A leaf whose exact gradient is 0 has only rounding noise to compare, and its relative error is
meaningless (noise / noise ~ 1): a row also passes when ‖g1 − g2‖ is under an absolute floor.

The norm of a large leaf can hide one wrong entry (a small entry off by 1e-6 moves ‖g1 − g2‖ by
far less than 1e-6 ‖g1‖), so each row also reports, CS231n style, the worst entry's error

    max_i |a_i − n_i| / max(|a_i| + |n_i|, floor),   floor = absolute floor / tolerance

and the index i where it is reached. The floor makes an entry smaller than it (in particular an
exactly-zero one) count by its absolute error, which passes below tolerance · floor = the same
absolute floor as the norm's: no new knob. A row passes when the norm and every entry are within
tolerance, against jax.grad and against finite differences.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from deltaprop.backprop import manual_grad
from deltaprop.losses import Cost, cost_named, loss_fn
from deltaprop.network import Activation, Params, activation_named, check_batch
from deltaprop.precision import float64_scope

GRADCHECK_BATCH = 16  # examples a gradient check of a training run takes: the first of its split
GRADCHECK_MAX_PARAMS = 20_000  # finite differences cost 4 loss evaluations per parameter

TOLERANCE_AUTODIFF = 1e-10
TOLERANCE_FINITE_DIFFERENCES = 1e-6
FINITE_DIFFERENCE_STEP = 1e-3
ABSOLUTE_FLOOR_AUTODIFF = 1e-14  # ‖g1 − g2‖ below this passes whatever the relative error
ABSOLUTE_FLOOR_FINITE_DIFFERENCES = 1e-11
# Entries with |a| + |n| under these count by absolute error (floor · tolerance = the floor above).
ENTRY_FLOOR_AUTODIFF = ABSOLUTE_FLOOR_AUTODIFF / TOLERANCE_AUTODIFF  # 1e-4
ENTRY_FLOOR_FINITE_DIFFERENCES = (
    ABSOLUTE_FLOOR_FINITE_DIFFERENCES / TOLERANCE_FINITE_DIFFERENCES  # 1e-5
)
_TINY = 1e-300


@dataclass(frozen=True)
class Agreement:
    """How one leaf of the gradient under check agrees with one reference (jax.grad or FD)."""

    norm_error: float  # ‖g1 − g2‖ / (‖g1‖ + ‖g2‖)
    entry_error: float  # max_i |g1_i − g2_i| / max(|g1_i| + |g2_i|, entry floor)
    worst_entry: tuple[int, ...]  # the index i of that maximum
    norm_passed: bool  # norm_error ≤ tolerance, or ‖g1 − g2‖ ≤ the absolute floor
    entry_passed: bool  # entry_error ≤ tolerance

    @property
    def passed(self) -> bool:
        return self.norm_passed and self.entry_passed


def _agrees(
    g1: ArrayLike, g2: ArrayLike, tolerance: float, floor: float, entry_floor: float
) -> Agreement:
    """The norm check passes when relative ≤ tolerance or absolute ≤ floor; the entry check when
    every entry's error (floored at entry_floor) ≤ tolerance."""
    error = relative_error(g1, g2)
    absolute = float(np.linalg.norm(np.asarray(g1, np.float64) - np.asarray(g2, np.float64)))
    entry_error, worst = elementwise_relative_error(g1, g2, entry_floor)
    return Agreement(error, entry_error, worst, error <= tolerance or absolute <= floor,
                     entry_error <= tolerance)


def elementwise_relative_error(
    g1: ArrayLike, g2: ArrayLike, floor: float
) -> tuple[float, tuple[int, ...]]:
    """(max_i |g1_i − g2_i| / max(|g1_i| + |g2_i|, floor), the index i of the maximum)."""
    errors = _entry_errors(g1, g2, floor)
    worst = np.unravel_index(np.argmax(errors), errors.shape)
    return float(errors[worst]), tuple(int(i) for i in worst)


def _entry_errors(g1: ArrayLike, g2: ArrayLike, floor: float) -> np.ndarray:
    g1, g2 = np.asarray(g1, np.float64), np.asarray(g2, np.float64)
    return np.abs(g1 - g2) / np.maximum(np.abs(g1) + np.abs(g2), max(floor, _TINY))


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
    norm: float  # ‖∂L/∂leaf‖ from the gradient under check
    autodiff: Agreement  # against jax.grad
    finite_differences: Agreement  # against finite differences
    worst_entry: tuple[int, ...]  # the entry furthest over (or nearest) its tolerance

    @property
    def error_autodiff(self) -> float:
        return self.autodiff.norm_error

    @property
    def error_finite_differences(self) -> float:
        return self.finite_differences.norm_error

    @property
    def passed(self) -> bool:
        return self.autodiff.passed and self.finite_differences.passed


@dataclass(frozen=True)
class GradcheckReport:
    rows: list[LeafCheck]
    tolerance_autodiff: float
    tolerance_finite_differences: float
    heading: str = ""  # lines above the table: at which parameters, which gradient

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def table(self) -> tuple[list[str], list[list]]:
        """(columns, rows) of the report, for a W&B table."""
        columns = ["layer", "leaf", "shape", "grad_norm", "err_vs_jax_grad",
                   "entry_err_vs_jax_grad", "err_vs_finite_diff", "entry_err_vs_finite_diff",
                   "worst_entry", "pass"]
        rows = [[row.layer, row.leaf, str(row.shape), row.norm, row.autodiff.norm_error,
                 row.autodiff.entry_error, row.finite_differences.norm_error,
                 row.finite_differences.entry_error, str(row.worst_entry), row.passed]
                for row in self.rows]
        return columns, rows

    def format_table(self) -> str:
        """The heading (if any), one line per leaf, and the tolerances. Per reference (jax.grad,
        finite differences): "norm" is the leaf's relative error, "entry" its worst entry's, and
        `*` marks one over its tolerance; "worst" is the index of the worst entry."""
        mark = lambda error, passed: f"{error:>8.1e}{' ' if passed else '*'}"
        shape = max(8, *(len(str(row.shape)) for row in self.rows))
        worst = max(6, *(len(_index(row.worst_entry)) for row in self.rows))
        header = (
            f"{'layer':>5} {'leaf':>4} {'shape':>{shape}} {'‖grad‖':>8}  {'jax.grad':>8}  "
            f"{'entry':>8}   {'fin.diff':>8}  {'entry':>8}   {'worst':>{worst}}  result"
        )
        lines = [*filter(None, self.heading.splitlines()), header, "-" * len(header)]
        for row in self.rows:
            ad, fd = row.autodiff, row.finite_differences
            lines.append(
                f"{row.layer:>5} {row.leaf:>4} {row.shape!s:>{shape}} {row.norm:>8.2e}  "
                f"{mark(ad.norm_error, ad.norm_passed)} {mark(ad.entry_error, ad.entry_passed)}  "
                f"{mark(fd.norm_error, fd.norm_passed)} {mark(fd.entry_error, fd.entry_passed)}  "
                f"{_index(row.worst_entry):>{worst}}  {'pass' if row.passed else 'FAIL'}"
            )
        lines.append(
            f"tolerances (relative, float64; the norm and each entry): jax.grad "
            f"{self.tolerance_autodiff:.0e}, fin.diff {self.tolerance_finite_differences:.0e}"
            f" -> {'all passed' if self.passed else 'FAILED (* over tolerance)'}"
        )
        return "\n".join(lines)


def _index(index: tuple[int, ...]) -> str:
    return "[" + ",".join(map(str, index)) + "]"


def _worst_entry(
    manual: ArrayLike, autodiff: ArrayLike, numeric: ArrayLike, tolerance_autodiff: float,
    tolerance_finite_differences: float,
) -> tuple[int, ...]:
    """The index where an entry's error, in units of its tolerance, is largest (either check)."""
    ratios = [
        _entry_errors(manual, autodiff, ENTRY_FLOOR_AUTODIFF) / tolerance_autodiff,
        _entry_errors(manual, numeric, ENTRY_FLOOR_FINITE_DIFFERENCES)
        / tolerance_finite_differences,
    ]
    worst = np.maximum(*ratios)
    return tuple(int(i) for i in np.unravel_index(np.argmax(worst), worst.shape))


_STENCIL = ((2.0, -1.0), (1.0, 8.0), (-1.0, -8.0), (-2.0, 1.0))  # (multiple of ε, weight)


def finite_difference_grad(
    params: Params, x: ArrayLike, y: ArrayLike, step: float = FINITE_DIFFERENCE_STEP,
    loss: str | Cost = "bce", activation: str | Activation = "sigmoid",
) -> Params:
    """∂L/∂params by the fourth-order central stencil, one direction per parameter.

    All 4·P perturbed losses run one after another in a single `lax.map` loop whose body is one
    loss evaluation: a small program that compiles fast (vmapping the directions compiles ~10×
    slower on CPU), and the loop itself takes microseconds per evaluation. Compiled once per
    shape, cost and activation.
    """
    return _finite_differences(params, jnp.asarray(x), jnp.asarray(y), step,
                               cost_named(loss), activation_named(activation))


@partial(jax.jit, static_argnames=("loss", "activation"))
def _finite_differences(params, x, y, step, loss: Cost, activation: Activation) -> Params:
    flat, unravel = ravel_pytree(params)
    multiples = jnp.asarray([m for m, _ in _STENCIL], flat.dtype)
    weights = jnp.asarray([w for _, w in _STENCIL], flat.dtype)

    def perturbed_loss(k):  # k = s·P + i: stencil point s, direction i
        theta = flat.at[k % flat.size].add(multiples[k // flat.size] * step)
        return loss_fn(unravel(theta), x, y, loss=loss, activation=activation)

    losses = jax.lax.map(perturbed_loss, jnp.arange(4 * flat.size)).reshape(4, flat.size)
    return unravel(weights @ losses / (12 * step))


@partial(jax.jit, static_argnames=("gradient_fn", "loss", "activation"))
def _gradients(params, x, y, gradient_fn, loss: Cost, activation: Activation):
    """(the gradient under check, jax.grad of loss_fn): one compiled program for the two."""
    under_check = gradient_fn or partial(manual_grad, loss=loss, activation=activation)
    reference = jax.grad(partial(loss_fn, loss=loss, activation=activation))
    return under_check(params, x, y), reference(params, x, y)


def gradcheck(
    params: Params,
    x: ArrayLike,
    y: ArrayLike,
    tolerance_autodiff: float = TOLERANCE_AUTODIFF,
    tolerance_finite_differences: float = TOLERANCE_FINITE_DIFFERENCES,
    gradient_fn: Callable[[Params, jax.Array, jax.Array], Params] | None = None,
    loss: str | Cost = "bce",
    activation: str | Activation = "sigmoid",
) -> GradcheckReport:
    """Compare manual_grad with jax.grad and with finite differences, per layer and leaf: the
    leaf's relative error and its worst entry's (module docstring).

    Everything runs in float64 (params and data are cast up), whatever the training precision.

    Args:
      params: from `init_params`.
      x: (N, n_1) inputs; keep N and the network small (finite differences: 4 passes/parameter).
      y: (N, n_L) targets in {0, 1}.
      gradient_fn: the gradient under test, (params, x, y) -> grads; `manual_grad` (for this
        cost and activation) by default.
      loss, activation: the cost and hidden φ checked (names or their entries).
    """
    options = {"loss": cost_named(loss), "activation": activation_named(activation)}
    check_batch(params, x, y)
    with float64_scope():
        params = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float64), params)
        x, y = jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)
        manual, autodiff = _gradients(params, x, y, gradient_fn, **options)
        numeric = finite_difference_grad(params, x, y, **options)
        rows = []
        for index, (m, a, n) in enumerate(zip(manual, autodiff, numeric)):
            for leaf in ("W", "b"):
                autodiff_agreement = _agrees(
                    m[leaf], a[leaf], tolerance_autodiff, ABSOLUTE_FLOOR_AUTODIFF,
                    ENTRY_FLOOR_AUTODIFF,
                )
                numeric_agreement = _agrees(
                    m[leaf], n[leaf], tolerance_finite_differences,
                    ABSOLUTE_FLOOR_FINITE_DIFFERENCES, ENTRY_FLOOR_FINITE_DIFFERENCES,
                )
                rows.append(
                    LeafCheck(
                        layer=index + 2,
                        leaf=leaf,
                        shape=tuple(m[leaf].shape),
                        norm=float(np.linalg.norm(np.asarray(m[leaf]))),
                        autodiff=autodiff_agreement,
                        finite_differences=numeric_agreement,
                        worst_entry=_worst_entry(
                            m[leaf], a[leaf], n[leaf], tolerance_autodiff,
                            tolerance_finite_differences,
                        ),
                    )
                )
    return GradcheckReport(rows, tolerance_autodiff, tolerance_finite_differences)
