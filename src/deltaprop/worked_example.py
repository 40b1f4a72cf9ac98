"""The textbook example, step by step: every z_l, a_l, δ_l and gradient of one batch, one update.

`worked_example(params, x, y, learning_rate)` runs the hand-written pass
(`deltaprop.backprop.backprop_trace`) on a small batch in float64 and records, for each layer from the
output layer L down to 2:

    z_l = a_{l−1} W_l + b_l                    a_1 = x
    a_l = σ(z_l)
    δ_L = (a_L − y) / (N·n_L)                  output layer: σ' cancels against BCE
    δ_l = (δ_{l+1} W_{l+1}ᵀ) ⊙ a_l(1 − a_l)     hidden layers
    ∂L/∂W_l = a_{l−1}ᵀ δ_l,  ∂L/∂b_l = Σ_batch δ_l
    W_l ← W_l − η ∂L/∂W_l,   b_l ← b_l − η ∂L/∂b_l

δ_l is ∂L/∂z_l of the MEAN loss over the N·n_L output elements. The textbook's per-example
δ_L = a_L − y is N·n_L times ours, and its ∂L/∂W_l = a_{l−1}ᵀ δ_l / N; here the 1/(N·n_L) of
the mean lives in δ_L, so no 1/N appears in the gradients.

Every δ_l, ∂L/∂W_l and ∂L/∂b_l is checked against jax.grad (δ_l as the gradient with respect
to an offset added to z_l), the update against `deltaprop.training.make_train_step` with
`optax.sgd`, and the loss must fall. `format_console` and `format_markdown` render the record as
text; both are pure, and nothing here prints or writes files (experiments/worked_example.py does).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from deltaprop.backprop import backprop_trace, manual_value_and_grad
from deltaprop.data import load_dataset, split_and_standardize
from deltaprop.gradient_check import TOLERANCE_AUTODIFF, relative_error
from deltaprop.losses import binary_cross_entropy_with_logits, loss_fn
from deltaprop.network import Params, check_batch, init_params, layer_sizes, linear
from deltaprop.training import make_train_step

DEFAULT_BATCH = 4
DEFAULT_DIGITS = 4
CHECK_MARK, CROSS_MARK = "✓", "✗"


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

    @property
    def loss_decreased(self) -> bool:
        return self.loss_after < self.loss_before

    @property
    def update_passed(self) -> bool:
        return self.error_update <= self.tolerance

    @property
    def passed(self) -> bool:
        layers_passed = all(record.passed for record in self.layers)
        return layers_passed and self.update_passed and self.loss_decreased

    def layer(self, number: int) -> LayerRecord:
        """The record of textbook layer `number` (2..L)."""
        for record in self.layers:
            if record.layer == number:
                return record
        raise KeyError(f"no layer {number}: layers run from 2 to {len(self.sizes)}")


def _float64_scope():
    if jax.config.jax_enable_x64:
        return contextlib.nullcontext()
    return jax.enable_x64(True)


def _autodiff_deltas(params: Params, x: jax.Array, y: jax.Array) -> list[jax.Array]:
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
    autodiff_deltas = _autodiff_deltas(params, x, y)
    # θ ← θ − η ∂L/∂θ, leaf by leaf.
    new_params = jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)
    loss_after = loss_fn(new_params, x, y)
    # The same step through the training code: optax.sgd(η) on manual_value_and_grad.
    sgd = optax.sgd(learning_rate)
    trained_params, _, _ = make_train_step(sgd, manual_value_and_grad)(
        params, sgd.init(params), x, y
    )
    return autodiff_grads, autodiff_deltas, new_params, loss_after, trained_params


def _flatten(tree: Any) -> np.ndarray:
    return np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(tree)])


def _squared_norm(tree: Any) -> float:
    return float(np.sum(np.square(_flatten(tree))))


def worked_example(
    params: Params,
    x: ArrayLike,
    y: ArrayLike,
    learning_rate: float,
    tolerance: float = TOLERANCE_AUTODIFF,
) -> WorkedExample:
    """Run backprop on one batch, check every layer against jax.grad, take one step θ ← θ − η g.

    Everything runs in float64 (params and data are cast up), whatever the training precision.

    Args:
      params: [{"W": (n_{l−1}, n_l), "b": (n_l,)}] for l = 2..L.
      x: (N, n_1) inputs; keep N small, every value is printed.
      y: (N, n_L) targets in {0, 1}.
      learning_rate: η of the plain gradient-descent step.
      tolerance: largest relative error (float64) accepted against jax.grad.

    Returns:
      A WorkedExample; `.passed` is False when any check fails.
    """
    check_batch(params, x, y)
    if not learning_rate > 0:
        raise ValueError(f"learning_rate={learning_rate!r} must be > 0")
    with _float64_scope():
        params = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float64), params)
        x, y = jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)
        # The recorded values are exactly what `jax.jit(backprop_trace)` returns, as in training.
        trace = jax.device_get(jax.jit(backprop_trace)(params, x, y))
        checks = jax.device_get(_step_and_checks(params, x, y, trace.grads, learning_rate))
        params, x, y = jax.device_get((params, x, y))
    autodiff_grads, autodiff_deltas, new_params, loss_after, trained_params = checks

    records = []
    n_layers = len(params)
    for index in reversed(range(n_layers)):  # params[index] is layer l = index + 2
        a = trace.activations[index + 1]  # a_l (activations start at a_1 = x)
        hidden = index < n_layers - 1
        errors = (
            relative_error(trace.deltas[index], autodiff_deltas[index]),
            relative_error(trace.grads[index]["W"], autodiff_grads[index]["W"]),
            relative_error(trace.grads[index]["b"], autodiff_grads[index]["b"]),
        )
        records.append(
            LayerRecord(
                layer=index + 2,
                weights=params[index]["W"],
                biases=params[index]["b"],
                pre_activation=trace.pre_activations[index],
                activation=a,
                sigmoid_derivative=a * (1 - a) if hidden else None,
                backpropagated=(
                    trace.deltas[index + 1] @ params[index + 1]["W"].T if hidden else None
                ),
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
        )
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
    )


def inputs_from_config(
    cfg: Any, batch: int = DEFAULT_BATCH
) -> tuple[Params, np.ndarray, np.ndarray]:
    """(params, x, y) as `python experiments/train.py` would start: float64 params, first batch.

    The data are `cfg.dataset` split and standardized with `cfg.seed`; the params come from the
    same key as the trainer's (`init_key` of `jax.random.split(jax.random.key(cfg.seed))`);
    x, y are the first `batch` examples of the standardized training split.

    Args:
      cfg: the composed config (model, dataset, seed).
      batch: N, the number of training examples shown.

    Returns:
      params (float64), x: (batch, n_1), y: (batch, n_L).
    """
    data = load_dataset(cfg.dataset, cfg.seed)
    splits = split_and_standardize(
        data, cfg.dataset.val_fraction, cfg.dataset.test_fraction, cfg.seed
    )
    n_train, batch = splits.x_train.shape[0], int(batch)
    if not 1 <= batch <= n_train:
        raise ValueError(
            f"worked_example.batch={batch} must be between 1 and the {n_train} training examples"
        )
    sizes = [splits.x_train.shape[1], *cfg.model.hidden, splits.y_train.shape[1]]
    with _float64_scope():
        init_key, _ = jax.random.split(jax.random.key(cfg.seed))
        params = init_params(init_key, sizes, cfg.model.init, jnp.float64)
        params = jax.tree.map(np.asarray, params)
    return params, splits.x_train[:batch], splits.y_train[:batch]


# ------------------------------------------------------------------------------- formatting


def format_number(value: float, digits: int = DEFAULT_DIGITS) -> str:
    """`digits` significant digits, trailing zeros kept: 0.1 -> '0.1000', 1.2e-5 -> '1.200e-05'."""
    return f"{value:#.{digits}g}"


def _mark(passed: bool) -> str:
    return CHECK_MARK if passed else CROSS_MARK


@dataclass(frozen=True)
class _Table:
    """Named matrices side by side, sharing their rows: blocks of (title, (rows, columns))."""

    row_header: str
    row_labels: list[str]
    blocks: list[tuple[str, np.ndarray]]


@dataclass(frozen=True)
class _Section:
    heading: str
    equations: list[str]
    tables: list[_Table]
    notes: list[str]


def _matrix(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    return array.reshape(1, -1) if array.ndim == 1 else array


def _with_bias_row(weights: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """W: (n_{l−1}, n_l) with b: (n_l,) as one more row, shown as row "b"."""
    return np.vstack([weights, _matrix(biases)])


def _layer_section(example: WorkedExample, record: LayerRecord) -> _Section:
    layer, n_batch = record.layer, example.x.shape[0]
    n_below, n_units = record.weights.shape
    is_output = layer == len(example.sizes)
    a_below = "x" if layer == 2 else f"a_{layer - 1}"
    z, a, delta = f"z_{layer}", f"a_{layer}", f"δ_{layer}"
    weights, biases = f"W_{layer}", f"b_{layer}"
    equations = [f"{z} = {a_below} {weights} + {biases}", f"{a} = σ({z})"]
    if is_output:
        equations.append(
            f"{delta} = ({a} − y) / (N·n_{layer}) = ({a} − y) / {n_batch * n_units}"
            "    (σ' cancels against BCE)"
        )
        backward_blocks = [
            ("y", example.y),
            (f"{a} − y", record.activation - example.y),
            (delta, record.delta),
        ]
    else:
        upper = f"δ_{layer + 1} W_{layer + 1}ᵀ"
        equations.append(f"{delta} = ({upper}) ⊙ {a}(1 − {a})")
        backward_blocks = [
            (upper, record.backpropagated),
            (f"{a}(1 − {a})", record.sigmoid_derivative),
            (delta, record.delta),
        ]
    update = f"{weights} ← {weights} − η ∂L/∂{weights}    {biases} ← {biases} − η ∂L/∂{biases}"
    equations += [
        f"∂L/∂{weights} = {a_below}ᵀ {delta}    ∂L/∂{biases} = Σ_batch {delta}",
        f"{update}    (η = {example.learning_rate:g})",
    ]
    examples = [str(n + 1) for n in range(n_batch)]
    tables = [
        _Table("n", examples, [(z, record.pre_activation), (a, record.activation)]),
        _Table("n", examples, backward_blocks),
        _Table(
            "i",
            [str(i + 1) for i in range(n_below)] + ["b"],
            [
                (f"{weights}; {biases}", _with_bias_row(record.weights, record.biases)),
                (
                    f"∂L/∂{weights}; ∂L/∂{biases}",
                    _with_bias_row(record.grad_weights, record.grad_biases),
                ),
                (
                    f"{weights}; {biases} after the update",
                    _with_bias_row(record.new_weights, record.new_biases),
                ),
            ],
        ),
    ]
    notes = []
    if is_output:
        textbook = (
            f"The textbook's per-example {delta} = {a} − y is N·n_{layer} = {n_batch * n_units} "
            f"times this {delta}:"
        )
        notes += [textbook, "here δ is ∂L/∂z of the mean loss, so ∂L/∂W = aᵀδ needs no extra 1/N."]
    notes.append(
        f"against jax.grad (relative error): {delta} {record.error_delta:.1e}, "
        f"∂L/∂{weights} {record.error_weights:.1e}, ∂L/∂{biases} {record.error_biases:.1e}  "
        f"{_mark(record.passed)}"
    )
    kind = "output layer" if is_output else "hidden layer"
    heading = f"Layer {layer} ({kind}, {n_below} → {n_units} units)"
    return _Section(heading, equations, tables, notes)


def _sections(example: WorkedExample) -> list[_Section]:
    n_batch, n_out = example.y.shape
    last = len(example.sizes)
    examples = [str(n + 1) for n in range(n_batch)]
    loss = (
        f"loss L = mean over N·n_{last} = {n_batch * n_out} elements of "
        f"BCE(z_{last}, y) = {format_number(example.loss_before, 6)}"
    )
    inputs = _Section(
        "Layer 1 (input)",
        ["a_1 = x    (standardized features)", "y ∈ {0, 1}    (targets)"],
        [_Table("n", examples, [("x = a_1", example.x), ("y", example.y)])],
        [loss],
    )
    change = example.loss_after - example.loss_before
    rose = "" if example.loss_decreased else "  (the loss rose: η is too large)"
    losses = (
        f"loss before {format_number(example.loss_before, 6)}, "
        f"after {format_number(example.loss_after, 6)}: change {change:+.4e}  "
        f"{_mark(example.loss_decreased)}{rose}"
    )
    prediction = f"first-order prediction −η‖∂L/∂θ‖² = {example.predicted_loss_change:+.4e}"
    same_step = (
        "the same step by deltaprop.training.make_train_step with optax.sgd(η): "
        f"relative error {example.error_update:.1e}  {_mark(example.update_passed)}"
    )
    update = _Section(
        "Update",
        [f"θ ← θ − η ∂L/∂θ    (η = {example.learning_rate:g}, every W_l and b_l)"],
        [],
        [losses, prediction, same_step],
    )
    return [inputs] + [_layer_section(example, record) for record in example.layers] + [update]


def _summary(example: WorkedExample) -> str:
    sizes = "-".join(str(n) for n in example.sizes)
    return (
        f"{len(example.sizes)}-layer sigmoid network {sizes}, binary cross-entropy from logits, "
        f"float64, N = {example.x.shape[0]} examples"
    )


def _verdict(example: WorkedExample) -> str:
    if example.passed:
        return f"All checks passed (tolerance {example.tolerance:.0e} against jax.grad)."
    return f"CHECKS FAILED (tolerance {example.tolerance:.0e} against jax.grad)."


def _console_table(table: _Table, digits: int) -> list[str]:
    label_width = max(len(table.row_header), *(len(label) for label in table.row_labels))
    title_line, index_line = " " * label_width, table.row_header.rjust(label_width)
    rows = [label.rjust(label_width) for label in table.row_labels]
    for title, array in table.blocks:
        array = _matrix(array)
        formatted = [[format_number(value, digits) for value in row] for row in array]
        width = max(len(str(array.shape[1])), *(len(value) for row in formatted for value in row))
        block_width = max(len(title), array.shape[1] * (width + 1) - 1)
        indices = " ".join(str(j + 1).rjust(width) for j in range(array.shape[1]))
        title_line += " │ " + title.ljust(block_width)
        index_line += " │ " + indices.rjust(block_width)
        for r, row in enumerate(formatted):
            rows[r] += " │ " + " ".join(value.rjust(width) for value in row).rjust(block_width)
    return [title_line.rstrip(), index_line, *rows]


def format_console(example: WorkedExample, digits: int = DEFAULT_DIGITS) -> str:
    """Plain text for a terminal: the input, then one block per layer from the output layer down
    to layer 2, then the update; numbers to `digits` significant digits."""
    lines = ["Worked example: " + _summary(example), ""]
    for section in _sections(example):
        lines.append(section.heading)
        lines += ["  " + equation for equation in section.equations]
        for table in section.tables:
            lines += ["    " + line for line in _console_table(table, digits)]
        lines += ["  " + note for note in section.notes]
        lines.append("")
    lines.append(_verdict(example))
    return "\n".join(lines)


def _markdown_table(table: _Table, digits: int) -> list[str]:
    header = [table.row_header]
    for title, array in table.blocks:
        header += [f"{title} [{j + 1}]" for j in range(_matrix(array).shape[1])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for r, label in enumerate(table.row_labels):
        row = [label]
        for _, array in table.blocks:
            row += [format_number(value, digits) for value in _matrix(array)[r]]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def format_markdown(example: WorkedExample, digits: int = DEFAULT_DIGITS) -> str:
    """A Markdown report: `## Layer 1 (input)`, a section per layer from `## Layer L` down to
    `## Layer 2` (equations in a code block, values in tables), `## Update` and `## Checks`."""
    lines = [
        "# Worked example: backpropagation step by step",
        "",
        _summary(example) + ".",
        (
            "δ_l is ∂L/∂z_l of the mean loss (see docs/backprop.md); the layers run from the "
            "output layer down, in the order backprop computes them."
        ),
        "",
    ]
    for section in _sections(example):
        lines += [f"## {section.heading}", "", "```text", *section.equations, "```", ""]
        for table in section.tables:
            lines += [*_markdown_table(table, digits), ""]
        lines += [*(f"{note}  " for note in section.notes), ""]
    lines += [
        "## Checks",
        "",
        "| layer | δ_l vs jax.grad | ∂L/∂W_l vs jax.grad | ∂L/∂b_l vs jax.grad | result |",
        "|---:|---:|---:|---:|:---:|",
    ]
    for record in example.layers:
        lines.append(
            f"| {record.layer} | {record.error_delta:.1e} | {record.error_weights:.1e} | "
            f"{record.error_biases:.1e} | {_mark(record.passed)} |"
        )
    lines += ["", _verdict(example), ""]
    return "\n".join(lines)
