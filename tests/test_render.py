"""Tests for deltaprop.teaching.render: the worked example printed faithfully, layer by layer."""

import dataclasses
import re

from deltaprop.teaching.render import (
    CHECK_MARK,
    CROSS_MARK,
    format_console,
    format_markdown,
    format_number,
)


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end)]


def test_console_prints_the_rounded_deltas_of_layer_5(example):
    text = format_console(example)
    layer_5 = _section(text, "Layer 5 (output layer", "Layer 4 (hidden layer")
    for value in example.layer(5).delta.ravel():
        assert format_number(value) in layer_5
    for value in example.layer(5).grad_weights.ravel():
        assert format_number(value) in layer_5
    assert "δ_5 = (a_5 − y) / (N·n_5) = (a_5 − y) / 4" in layer_5
    headings = re.findall(r"^Layer (\d)", text, flags=re.MULTILINE)
    assert headings == ["1", "5", "4", "3", "2"]
    assert text.count(CHECK_MARK) == 4 + 2  # four layers, the loss, the optax step
    assert CROSS_MARK not in text
    assert text.rstrip().endswith("All checks passed (tolerance 1e-10 against jax.grad).")


def test_format_number_keeps_four_significant_digits():
    assert format_number(0.1) == "0.1000"
    assert format_number(-0.0123456) == "-0.01235"
    assert format_number(1.23456e-5) == "1.235e-05"
    assert format_number(1.0, digits=2) == "1.0"


def test_a_failed_check_is_marked_and_named(example):
    broken = dataclasses.replace(example, error_update=1.0)
    assert not broken.passed
    text = format_console(broken)
    assert CROSS_MARK in text
    assert "CHECKS FAILED" in text
    assert "CHECKS FAILED" in format_markdown(broken)


def test_markdown_has_a_section_per_layer_from_5_down_to_2(example):
    markdown = format_markdown(example)
    headings = re.findall(r"^## Layer (\d)", markdown, flags=re.MULTILINE)
    assert headings == ["1", "5", "4", "3", "2"]
    for layer in (5, 4, 3, 2):
        end = f"## Layer {layer - 1}" if layer > 2 else "## Update"
        section = _section(markdown, f"## Layer {layer}", end)
        assert f"| δ_{layer} [1] |" in section
        assert f"∂L/∂W_{layer} = " in section
        assert format_number(example.layer(layer).delta[0, 0]) in section
    checks = markdown[markdown.index("## Checks") :]
    assert re.findall(r"^\| (\d) \|", checks, flags=re.MULTILINE) == ["5", "4", "3", "2"]


