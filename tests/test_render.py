"""Tests for deltaprop.teaching.render: the worked example printed faithfully, forward then backward.

The by-hand lines are checked as a reader with a calculator would check them: each printed line's
numbers, read back from the text at their printed precision (an interval per number), must give
an interval that contains the printed result.
"""

import dataclasses
import math
import re

import pytest
from conftest import compose_config

from deltaprop.cli.teaching import worked_example_inputs
from deltaprop.teaching.render import (
    CHECK_MARK,
    CROSS_MARK,
    format_console,
    format_markdown,
    format_number,
)
from deltaprop.teaching.worked_example import worked_example

NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d*)?(?:e[+-]\d+)?")


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end)]


@dataclasses.dataclass(frozen=True)
class Interval:
    """The real numbers [low, high]: arithmetic on what a rounded number can stand for."""

    low: float
    high: float

    @staticmethod
    def of(value) -> "Interval":
        return value if isinstance(value, Interval) else Interval(value, value)

    def __add__(self, other):
        other = Interval.of(other)
        return Interval(self.low + other.low, self.high + other.high)

    __radd__ = __add__

    def __sub__(self, other):
        other = Interval.of(other)
        return Interval(self.low - other.high, self.high - other.low)

    def __rsub__(self, other):
        return Interval.of(other) - self

    def __mul__(self, other):
        other = Interval.of(other)
        products = [a * b for a in (self.low, self.high) for b in (other.low, other.high)]
        return Interval(min(products), max(products))

    __rmul__ = __mul__

    def __truediv__(self, other):
        other = Interval.of(other)
        assert other.low > 0 or other.high < 0, "division by an interval around 0"
        return self * Interval(1 / other.high, 1 / other.low)

    def __rtruediv__(self, other):
        return Interval.of(other) / self

    def overlaps(self, other: "Interval") -> bool:
        return self.low <= other.high and other.low <= self.high


def printed(text: str) -> Interval:
    """Every value that prints as `text`: ± half a unit in its last digit; integers are exact."""
    value = float(text)
    mantissa, _, exponent = text.partition("e")
    if "." not in mantissa:
        return Interval(value, value)
    decimals = len(mantissa.split(".")[1])
    half = 0.5 * 10.0 ** (int(exponent or 0) - decimals)
    return Interval(value - half, value + half)


def recompute(numbers: str) -> Interval:
    """A printed line's numbers, e.g. "((0.5)(-1.1) + (0.2)(0.3))(0.25)" or "1/(1 + e^{0.3})",
    evaluated from the printed digits alone."""
    expression = re.sub(r"e\^\{([^}]*)\}", r"exp(\1)", numbers)
    expression = NUMBER.sub(lambda m: f'printed("{m.group(0)}")', expression)
    expression = expression.replace(")(", ")*(")
    exp = lambda x: Interval(math.exp(x.low), math.exp(x.high))
    return eval(expression, {"__builtins__": {}}, {"printed": printed, "exp": exp})


def check_line(line: str) -> bool:
    """Does the line's result lie within what its printed numbers can give?"""
    *_, numbers, result = line.split(" = ")
    return recompute(numbers).overlaps(printed(result))


def by_hand_lines(text: str) -> list[str]:
    """The arithmetic lines: `name[index] = formula = numbers = result` (or `name ← ...`),
    whose numbers part holds only numbers and operators."""
    lines = [line.strip() for line in text.splitlines()]
    return [
        line for line in lines
        if re.match(r"^\S+\[[\d,]+\]\)? [=←] ", line) and line.count(" = ") >= 2
        and re.fullmatch(r"[\d\s().+\-e^{}/]+", line.split(" = ")[-2])
    ]


@pytest.fixture(scope="module")
def by_hand_example():
    cfg = compose_config("experiment=worked_example_by_hand", config_name="worked_example")
    params, x, y = worked_example_inputs(cfg, 4)
    return worked_example(params, x, y, cfg.optimizer.lr, data="the XOR truth table")


def test_console_prints_forward_then_backward(example):
    text = format_console(example)
    headings = re.findall(r"^Layer (\d)", text, flags=re.MULTILINE)
    assert headings == ["1", "2", "3", "4", "5", "5", "4", "3", "2"]
    forward = text.index("Forward pass: layer 2 to layer 5")
    backward = text.index("Backward pass: layer 5 down to layer 2")
    assert forward < text.index("z_5 = a_4 W_5 + b_5") < backward  # a_4 is shown before z_5
    assert text.index("a_4 = σ(z_4)") < text.index("z_5 = a_4 W_5 + b_5")
    layer_5 = _section(text, "Layer 5 (output layer)\n", "Layer 4 (hidden layer)\n")
    for value in example.layer(5).delta.ravel():
        assert format_number(value) in layer_5
    for value in example.layer(5).grad_weights.ravel():
        assert format_number(value) in layer_5
    assert "δ_5 = (a_5 − y) / (N·n_5) = (a_5 − y) / 4" in layer_5
    assert "textbook's per-example δ^5 = a^5 − y is N·n_5 = 4 times it" in layer_5
    assert text.count(CHECK_MARK) == 4 + 3  # four layers; the loss, gᵀHg, the optax step
    assert CROSS_MARK not in text
    assert text.rstrip().endswith("All checks passed (tolerance 1e-10 against jax.grad).")
    assert not by_hand_lines(text)  # the default mode prints tables, not arithmetic


def test_the_first_order_prediction_is_explained_at_eta_and_a_tenth(example):
    text = format_console(example)
    assert "L(θ − η g) − L(θ) = −η ‖g‖² + ½ η² gᵀHg + O(η³)" in text
    rows = {match[0]: match[1:] for match in re.findall(
        r"^\s+(η|η/10) = \S+\s+(\S+)\s+(\S+)\s+(\S+)%\s+(\S+)\s+(\S+)%$", text, re.MULTILINE)}
    assert set(rows) == {"η", "η/10"}
    for name, change in zip(("η", "η/10"), example.loss_changes, strict=True):
        actual, first, first_miss, second, _ = rows[name]
        assert float(actual) == pytest.approx(change.actual, rel=1e-4)
        assert float(first) == pytest.approx(change.first_order, rel=1e-4)
        assert float(first_miss) == pytest.approx(100 * abs(change.first_order_miss), rel=1e-2)
        assert float(second) == pytest.approx(change.second_order, rel=1e-4)


def test_every_printed_by_hand_line_checks_out_at_its_printed_precision(by_hand_example):
    for digits in (4, 6):
        text = format_console(by_hand_example, digits, by_hand=True)
        lines = by_hand_lines(text)
        # z, a, σ', δ, ∂L/∂W, ∂L/∂b and the updates of a 2-2-2-2-1 network on 4 examples
        assert len(lines) == 2 * 4 * 7 + 4 * (7 + 6) + 2 * (14 + 7)
        failed = [line for line in lines if not check_line(line)]
        assert not failed, failed[:3]
    one_line = next(line for line in lines if line.startswith("δ_4[2,1] = "))
    assert re.fullmatch(
        r"δ_4\[2,1\] = δ_5\[2,1\] W_5\[1,1\] σ'\(z_4\[2,1\]\) = \(\S+\)\(\S+\)\(\S+\) = \S+",
        one_line,
    )


def test_the_line_check_catches_a_wrong_digit():
    good = "δ_4[1] = δ_5[1] W_5[1,1] σ'(z_4[1]) = (0.3897)(-1.038)(0.2465) = -0.09971"
    assert check_line(good)
    assert not check_line(good.replace("-0.09971", "-0.09871"))
    assert check_line("a_3[1] = σ(z_3[1]) = 1/(1 + e^{0.3239}) = 0.4197")
    assert not check_line("a_3[1] = σ(z_3[1]) = 1/(1 + e^{0.3239}) = 0.4297")
    assert check_line("δ_5[1] = (a_5[1] − y[1]) / (N·n_5) = (0.3897 - 0)/1 = 0.3897")
    # rounding is allowed for: (0.5001)(0.2469) = 0.12347..., but the unrounded factors can
    # give a product that rounds to 0.1234, as the printed result does
    assert round(0.5001 * 0.2469, 4) == 0.1235
    assert check_line("x[1] = f = (0.5001)(0.2469) = 0.1234")


def test_by_hand_reads_the_calculator_case_in_order(by_hand_example):
    text = format_console(by_hand_example, by_hand=True)
    assert text.startswith("Worked example by hand: 5-layer sigmoid network 2-2-2-2-1")
    assert "a_1 = x    (the XOR truth table)" in text
    first_z, first_delta = text.index("z_2[1,1] = "), text.index("δ_5[1,1] = ")
    assert first_z < text.index("a_5[4,1] = σ(z_5[4,1])") < first_delta
    assert first_delta < text.index("δ_2[4,2] = ") < text.index("W_2[1,1] ← W_2[1,1] − η")
    assert "W_l[i,j] = w^l_{ji}" in text
    assert "rounded to 4 significant digits (worked_example.digits)" in text


def test_format_number_keeps_four_significant_digits():
    assert format_number(0.1) == "0.1000"
    assert format_number(-0.0123456) == "-0.01235"
    assert format_number(1.23456e-5) == "1.235e-05"
    assert format_number(1.0, digits=2) == "1.0"


def test_digits_sets_the_precision_of_every_table(example):
    text = format_console(example, digits=7)
    assert format_number(example.layer(3).delta[0, 0], 7) in text
    assert format_number(example.layer(3).delta[0, 0], 4) not in text


def test_a_failed_check_is_marked_and_named(example):
    broken = dataclasses.replace(example, error_update=1.0)
    assert not broken.passed
    text = format_console(broken)
    assert CROSS_MARK in text
    assert "CHECKS FAILED" in text
    assert "CHECKS FAILED" in format_markdown(broken)


def test_markdown_goes_forward_then_backward_and_embeds_the_picture(example):
    markdown = format_markdown(example, picture="network.svg")
    assert "](network.svg)" in markdown
    assert "](network.svg)" not in format_markdown(example)
    headings = re.findall(r"^(##+) Layer (\d)", markdown, flags=re.MULTILINE)
    assert headings == [("##", "1")] + [("###", n) for n in "2345" + "5432"]
    backward = markdown[markdown.index("## Backward pass") :]
    for layer in (5, 4, 3, 2):
        end = f"### Layer {layer - 1}" if layer > 2 else "## Update"
        section = _section(backward, f"### Layer {layer}", end)
        assert f"| δ_{layer} [1] |" in section
        assert f"∂L/∂W_{layer} = " in section
        assert format_number(example.layer(layer).delta[0, 0]) in section
    checks = markdown[markdown.index("## Checks") :]
    assert re.findall(r"^\| (\d) \|", checks, flags=re.MULTILINE) == ["5", "4", "3", "2"]


def test_markdown_by_hand_puts_the_arithmetic_in_code_blocks(by_hand_example):
    markdown = format_markdown(by_hand_example, by_hand=True)
    blocks = re.findall(r"```text\n(.*?)```", markdown, flags=re.DOTALL)
    lines = [line for block in blocks for line in by_hand_lines(block)]
    assert len(lines) == len(by_hand_lines(format_console(by_hand_example, by_hand=True)))


def test_a_failed_curvature_check_fails_the_example(example):
    broken = dataclasses.replace(example, error_curvature=1.0)
    assert not broken.passed and broken.update_passed
    assert "jax.jvp of jax.grad: relative error 1.0e+00  ✗" in format_console(broken)
