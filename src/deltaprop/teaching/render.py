"""The worked example as text: `format_console` for a terminal, `format_markdown` for a report.

Both are pure functions of a `WorkedExample` (worked_example.py): the input layer, one section
per layer from the output layer L down to layer 2, then the update, every number to `digits`
significant digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deltaprop.teaching.worked_example import LayerRecord, WorkedExample

DEFAULT_DIGITS = 4
CHECK_MARK, CROSS_MARK = "✓", "✗"


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


def _parameter_table(record: LayerRecord) -> _Table:
    """W_l with b_l as its last row: before, the gradient, after the update."""
    weights, biases = f"W_{record.layer}", f"b_{record.layer}"
    return _Table(
        "i",
        [str(i + 1) for i in range(record.weights.shape[0])] + ["b"],
        [
            (f"{weights}; {biases}", _with_bias_row(record.weights, record.biases)),
            (f"∂L/∂{weights}; ∂L/∂{biases}",
             _with_bias_row(record.grad_weights, record.grad_biases)),
            (f"{weights}; {biases} after the update",
             _with_bias_row(record.new_weights, record.new_biases)),
        ],
    )


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
        _parameter_table(record),
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
