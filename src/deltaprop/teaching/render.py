"""The worked example as text: `format_console` for a terminal, `format_markdown` for a report.

Both are pure functions of a `WorkedExample` (worked_example.py), in the order a reader needs
them: the input layer, the forward pass from layer 2 up to the output layer L, the backward pass
from L down to layer 2, then the update; every number to `digits` significant digits.
`by_hand=True` (worked_example.mode=by_hand) adds, under each table, every number's arithmetic
with its numbers in (arithmetic.py), so a calculator can redo the whole step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from deltaprop.teaching.arithmetic import (
    DEFAULT_DIGITS,
    backward_equations,
    format_equation,
    format_number,
    forward_equations,
    update_equations,
)
from deltaprop.teaching.worked_example import LayerRecord, WorkedExample

__all__ = ["CHECK_MARK", "CROSS_MARK", "DEFAULT_DIGITS", "format_console", "format_markdown",
           "format_number"]

CHECK_MARK, CROSS_MARK = "✓", "✗"
NOTATION = (
    "Row form, one example per row: z_l = a_{l−1} W_l + b_l, and W_l[i,j] = w^l_{ji} joins unit i "
    "of layer l − 1 to unit j of layer l. δ_l = ∂L/∂z_l of the mean loss L; the textbook's "
    "per-example δ^l is N·n_L times it (docs/backprop.md, Notation)."
)


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
    notes: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # preformatted: arithmetic, the Taylor table
    part: str = ""  # the part it opens: "Forward pass ...", "Backward pass ..."
    nested: bool = False  # a layer inside the forward or backward pass (### in Markdown)


def _matrix(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    return array.reshape(1, -1) if array.ndim == 1 else array


def _with_bias_row(weights: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """W: (n_{l−1}, n_l) with b: (n_l,) as one more row, shown as row "b"."""
    return np.vstack([weights, _matrix(biases)])


def _parameter_table(record: LayerRecord, blocks: list[tuple[str, np.ndarray]]) -> _Table:
    """Tables of W_l-shaped blocks with b_l as their last row; rows are i = 1..n_{l−1}, b."""
    return _Table("i", [str(i + 1) for i in range(record.weights.shape[0])] + ["b"], blocks)


def _examples(example: WorkedExample) -> list[str]:
    return [str(n + 1) for n in range(example.x.shape[0])]


def _kind(example: WorkedExample, layer: int) -> str:
    return "output layer" if layer == len(example.sizes) else "hidden layer"


def _forward_section(example: WorkedExample, record: LayerRecord, by_hand: bool,
                     digits: int) -> _Section:
    layer = record.layer
    n_below, n_units = record.weights.shape
    a_below = "x" if layer == 2 else f"a_{layer - 1}"
    weights, biases = f"W_{layer}", f"b_{layer}"
    tables = [
        _parameter_table(record, [(f"{weights}; {biases}",
                                   _with_bias_row(record.weights, record.biases))]),
        _Table("n", _examples(example), [(f"z_{layer}", record.pre_activation),
                                         (f"a_{layer}", record.activation)]),
    ]
    lines = ([format_equation(e, digits) for e in forward_equations(example, layer)]
             if by_hand else [])
    return _Section(
        f"Layer {layer} ({_kind(example, layer)}, {n_below} → {n_units} units)",
        [f"z_{layer} = {a_below} {weights} + {biases}", f"a_{layer} = σ(z_{layer})"],
        tables, lines=lines, nested=True,
    )


def _output_notes(example: WorkedExample, layer: int) -> list[str]:
    """The two δ's: the code's δ_L of the mean loss and the textbook's per-example δ^L."""
    n_batch, n_out = example.y.shape
    count = n_batch * n_out
    times = (f"the same number here (N·n_{layer} = 1)" if count == 1
             else f"N·n_{layer} = {count} times it")
    return [
        (f"Two errors, two symbols: δ_{layer} = ∂L/∂z_{layer} of the mean loss (this table); the "
         f"textbook's per-example δ^{layer} = a^{layer} − y is {times}."),
        (f"So the textbook's ∂C/∂w^{layer} = (1/N) Σ_n δ^{layer} (a^{layer - 1})ᵀ equals "
        f"n_{layer} ∂L/∂W_{layer}ᵀ: here the 1/(N·n_{layer}) rides in δ_{layer}, "
        "and ∂L/∂W = aᵀδ needs no 1/N."),
    ]


def _backward_section(example: WorkedExample, record: LayerRecord, by_hand: bool,
                      digits: int) -> _Section:
    layer, n_batch = record.layer, example.x.shape[0]
    n_units = record.weights.shape[1]
    is_output = layer == len(example.sizes)
    a_below = "x" if layer == 2 else f"a_{layer - 1}"
    a, delta, weights, biases = f"a_{layer}", f"δ_{layer}", f"W_{layer}", f"b_{layer}"
    if is_output:
        rule = (f"{delta} = ({a} − y) / (N·n_{layer}) = ({a} − y) / {n_batch * n_units}"
                "    (σ' cancels against BCE)")
        blocks = [("y", example.y), (f"{a} − y", record.activation - example.y), (delta, record.delta)]
    else:
        upper = f"δ_{layer + 1} W_{layer + 1}ᵀ"
        rule = f"{delta} = ({upper}) ⊙ {a}(1 − {a})"
        blocks = [(upper, record.backpropagated), (f"{a}(1 − {a})", record.sigmoid_derivative),
                  (delta, record.delta)]
    gradients = _with_bias_row(record.grad_weights, record.grad_biases)
    tables = [
        _Table("n", _examples(example), blocks),
        _parameter_table(record, [(f"∂L/∂{weights}; ∂L/∂{biases}", gradients)]),
    ]
    notes = _output_notes(example, layer) if is_output else []
    notes.append(
        f"against jax.grad (relative error): {delta} {record.error_delta:.1e}, "
        f"∂L/∂{weights} {record.error_weights:.1e}, ∂L/∂{biases} {record.error_biases:.1e}  "
        f"{_mark(record.passed)}"
    )
    lines = ([format_equation(e, digits) for e in backward_equations(example, layer)]
             if by_hand else [])
    return _Section(
        f"Layer {layer} ({_kind(example, layer)})",
        [rule, f"∂L/∂{weights} = {a_below}ᵀ {delta}    ∂L/∂{biases} = Σ_batch {delta}"],
        tables, notes, lines, nested=True,
    )


def _percent(fraction: float) -> str:
    return f"{100 * abs(fraction):.3g}%"


def _taylor_lines(example: WorkedExample) -> list[str]:
    """The loss change at η and η/10 beside its first- and second-order Taylor predictions."""
    lines = [
        "Why the first-order prediction is off: along the step, with g = ∂L/∂θ and H = ∂²L/∂θ²,",
        "    L(θ − η g) − L(θ) = −η ‖g‖² + ½ η² gᵀHg + O(η³)",
        (f"    ‖g‖² = {format_number(example.squared_gradient_norm)}, "
         f"gᵀHg = {format_number(example.curvature)}"),
        (f"    {'step':<12} {'actual ΔL':>12} {'first order':>12} {'off by':>9} "
         f"{'second order':>13} {'off by':>9}"),
    ]
    for name, change in zip(("η", "η/10"), example.loss_changes, strict=True):
        step = f"{name} = {change.learning_rate:g}"
        lines.append(
            f"    {step:<12} {change.actual:>12.4e} {change.first_order:>12.4e} "
            f"{_percent(change.first_order_miss):>9} {change.second_order:>13.4e} "
            f"{_percent(change.second_order_miss):>9}"
        )
    return [
        *lines,
        "    first order −η‖g‖², second order −η‖g‖² + ½η² gᵀHg; off by |prediction − actual| / |actual|",
        "The first-order prediction is the tangent of the loss along the step: it misses the",
        "actual change by about the curvature term ½η² gᵀHg, which shrinks against the change",
        "(about η‖g‖²) in proportion to η, so at η/10 the first order is about ten times closer;",
        "the second order closes most of the rest.",
    ]


def _update_section(example: WorkedExample, by_hand: bool, digits: int) -> _Section:
    tables = [
        _parameter_table(record, [
            (f"W_{record.layer}; b_{record.layer}",
             _with_bias_row(record.weights, record.biases)),
            ("after the update", _with_bias_row(record.new_weights, record.new_biases)),
        ])
        for record in example.layers
    ]
    change = example.loss_after - example.loss_before
    rose = "" if example.loss_decreased else "  (the loss rose: η is too large)"
    lines = []
    if by_hand:
        for record in example.layers:
            lines += [format_equation(e, digits) for e in update_equations(example, record.layer)]
        lines.append("")
    lines.append(
        f"loss before {format_number(example.loss_before, 6)}, "
        f"after {format_number(example.loss_after, 6)}: change {change:+.4e}  "
        f"{_mark(example.loss_decreased)}{rose}"
    )
    if example.loss_changes:
        lines += _taylor_lines(example)
    notes = [
        (f"gᵀHg by jax.jvp of deltaprop.backprop.manual_grad, against jax.jvp of jax.grad: "
         f"relative error {example.error_curvature:.1e}  {_mark(example.curvature_passed)}"),
        ("the same step by deltaprop.training.make_train_step with optax.sgd(η): "
         f"relative error {example.error_update:.1e}  {_mark(example.update_passed)}"),
    ]
    return _Section(
        "Update",
        [f"θ ← θ − η ∂L/∂θ    (η = {example.learning_rate:g}, every W_l and b_l)"],
        tables, notes, lines,
    )


def _input_section(example: WorkedExample, digits: int) -> _Section:
    n_batch, n_out = example.y.shape
    last = len(example.sizes)
    loss = (
        f"loss L = mean over N·n_{last} = {n_batch * n_out} elements of "
        f"BCE(z_{last}, y) = {format_number(example.loss_before, max(digits, 6))}"
    )
    source = f"    ({example.data})" if example.data else ""
    return _Section(
        "Layer 1 (input)",
        [f"a_1 = x{source}", "y ∈ {0, 1}    (targets)"],
        [_Table("n", _examples(example), [("x = a_1", example.x), ("y", example.y)])],
        [loss],
    )


def _sections(example: WorkedExample, by_hand: bool, digits: int) -> list[_Section]:
    """Input, forward 2 → L, backward L → 2, update."""
    last = len(example.sizes)
    forward = [_forward_section(example, r, by_hand, digits) for r in example.forward_layers]
    backward = [_backward_section(example, r, by_hand, digits) for r in example.layers]
    forward[0] = _with_part(forward[0], f"Forward pass: layer 2 to layer {last}")
    backward[0] = _with_part(backward[0], f"Backward pass: layer {last} down to layer 2")
    return [_input_section(example, digits), *forward, *backward,
            _update_section(example, by_hand, digits)]


def _with_part(section: _Section, part: str) -> _Section:
    return dataclasses.replace(section, part=part)


def _summary(example: WorkedExample) -> str:
    sizes = "-".join(str(n) for n in example.sizes)
    n_batch = example.x.shape[0]
    examples = "example" if n_batch == 1 else "examples"
    return (
        f"{len(example.sizes)}-layer sigmoid network {sizes}, binary cross-entropy from logits, "
        f"float64, N = {n_batch} {examples}"
    )


def _precision_note(digits: int, by_hand: bool) -> str:
    note = f"Every number is the float64 value rounded to {digits} significant digits"
    if by_hand:
        note += (" (worked_example.digits); a line redone from its rounded numbers can "
                 "differ in the last digit")
    return note + "."


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


def format_console(example: WorkedExample, digits: int = DEFAULT_DIGITS,
                   by_hand: bool = False) -> str:
    """Plain text for a terminal: the input, the forward pass (layer 2 up to L), the backward
    pass (L down to 2), the update; numbers to `digits` significant digits; with `by_hand`,
    every number's arithmetic as well."""
    title = "Worked example by hand: " if by_hand else "Worked example: "
    lines = [title + _summary(example), _precision_note(digits, by_hand), NOTATION, ""]
    for section in _sections(example, by_hand, digits):
        if section.part:
            lines += ["=" * len(section.part), section.part, "=" * len(section.part), ""]
        lines.append(section.heading)
        lines += ["  " + equation for equation in section.equations]
        for table in section.tables:
            lines += ["    " + line for line in _console_table(table, digits)]
        lines += ["  " + line if line else "" for line in section.lines]
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


def _markdown_checks(example: WorkedExample) -> list[str]:
    lines = [
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
    return [*lines, "", _verdict(example), ""]


def format_markdown(example: WorkedExample, digits: int = DEFAULT_DIGITS, by_hand: bool = False,
                    picture: str | None = None) -> str:
    """A Markdown report: `## Layer 1 (input)`, `## Forward pass` with a `### Layer l` for
    l = 2..L, `## Backward pass` with l = L..2, `## Update` and `## Checks`; `picture` (a path,
    e.g. "network.svg") is embedded under the title."""
    lines = ["# Worked example: backpropagation step by step", "", _summary(example) + ".", "",
             _precision_note(digits, by_hand), "", NOTATION, ""]
    if picture:
        lines += [f"![The network: every a, δ, w and ∂L/∂w of this step]({picture})", ""]
    for section in _sections(example, by_hand, digits):
        if section.part:
            lines += [f"## {section.part}", ""]
        level = "###" if section.nested else "##"
        lines += [f"{level} {section.heading}", "", "```text", *section.equations, "```", ""]
        for table in section.tables:
            lines += [*_markdown_table(table, digits), ""]
        if section.lines:
            lines += ["```text", *section.lines, "```", ""]
        lines += [*(f"{note}  " for note in section.notes), ""]
    return "\n".join(lines + _markdown_checks(example))
