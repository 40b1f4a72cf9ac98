"""Tests for deltaprop.teaching.arithmetic: every line's numbers, put back together, give its result.

The expression tree of a line holds the recorded float64 values, so evaluating it exactly must give
the recorded result to float64 rounding: that checks that each line states the right formula (the
right factors, weights and indices), independently of the printed rounding (tested in
test_render.py).
"""

import itertools
import math

import numpy as np
import pytest
from conftest import compose_config

from deltaprop.cli.teaching import worked_example_inputs
from deltaprop.teaching.arithmetic import (
    Difference,
    Equation,
    Number,
    Product,
    Quotient,
    Sigmoid,
    Sum,
    backward_equations,
    format_data,
    format_equation,
    format_expression,
    format_number,
    forward_equations,
    update_equations,
)
from deltaprop.teaching.worked_example import worked_example


def evaluate(expression) -> float:
    """The value of an expression tree, in float64, from its unrounded numbers."""
    if isinstance(expression, Number):
        return expression.value
    if isinstance(expression, Product):
        return math.prod(evaluate(factor) for factor in expression.factors)
    if isinstance(expression, Sum):
        return sum(evaluate(term) for term in expression.terms)
    if isinstance(expression, Difference):
        return evaluate(expression.left) - evaluate(expression.right)
    if isinstance(expression, Quotient):
        return evaluate(expression.numerator) / evaluate(expression.denominator)
    if isinstance(expression, Sigmoid):
        return 1 / (1 + math.exp(-evaluate(expression.argument)))
    raise TypeError(expression)


def all_equations(example) -> list[Equation]:
    last = len(example.sizes)
    equations = []
    for layer in range(2, last + 1):
        equations += forward_equations(example, layer)
    for layer in range(last, 1, -1):
        equations += backward_equations(example, layer) + update_equations(example, layer)
    return equations


@pytest.fixture(scope="module", params=[1, 4], ids=["one example", "the whole table"])
def by_hand(request):
    """The by-hand experiment's worked example on the first row, or all four, of XOR."""
    cfg = compose_config("experiment=worked_example_by_hand", config_name="worked_example")
    params, x, y = worked_example_inputs(cfg, request.param)
    return worked_example(params, x, y, cfg.optimizer.lr)


def test_every_line_recomputes_its_result_from_its_numbers(by_hand, example):
    for worked in (by_hand, example):
        equations = all_equations(worked)
        for equation in equations:
            assert evaluate(equation.numbers) == pytest.approx(equation.result, rel=1e-12,
                                                               abs=1e-15), equation.quantity
        n_batch, sizes = worked.x.shape[0], worked.sizes
        units, weights = sum(sizes[1:]), sum(a * b for a, b in itertools.pairwise(sizes))
        # z and a per example and unit, δ per example and unit (+ σ' in hidden layers),
        # ∂L/∂W and ∂L/∂b, then one update per parameter.
        hidden_units = units - sizes[-1]
        expected = (2 * n_batch * units + n_batch * (units + hidden_units)
                    + 2 * (weights + units))
        assert len(equations) == expected


def test_lines_name_the_numbers_they_use(by_hand):
    one = by_hand.x.shape[0] == 1
    suffix = "[1]" if one else "[1,1]"
    delta = next(e for e in backward_equations(by_hand, 4) if e.quantity == f"δ_4{suffix}")
    record, above = by_hand.layer(4), by_hand.layer(5)
    # δ_4[1] = δ_5[1] W_5[1,1] σ'(z_4[1]): one unit above, so one product of three factors
    assert delta.formula == f"δ_5{suffix} W_5[1,1] σ'(z_4{suffix})"
    assert [f.value for f in delta.numbers.factors] == [
        above.delta[0, 0], above.weights[0, 0], record.sigmoid_derivative[0, 0]
    ]
    z = forward_equations(by_hand, 3)[0]
    assert z.quantity == f"z_3{suffix}"
    inputs = ("a_2[1]", "a_2[2]") if one else ("a_2[1,1]", "a_2[1,2]")
    assert z.formula == f"{inputs[0]} W_3[1,1] + {inputs[1]} W_3[2,1] + b_3[1]"
    update = update_equations(by_hand, 2)[0]
    assert update.relation == "←" and update.quantity == "W_2[1,1]"
    assert update.result == by_hand.layer(2).new_weights[0, 0]


def test_format_equation_writes_a_calculator_line():
    equation = Equation(
        "δ_4[1]", "δ_5[1] W_5[1,1] σ'(z_4[1])",
        Product((Number(-0.61054), Number(-1.03849), Number(0.24664))), 0.15638,
    )
    assert format_equation(equation) == (
        "δ_4[1] = δ_5[1] W_5[1,1] σ'(z_4[1]) = (-0.6105)(-1.038)(0.2466) = 0.1564"
    )
    assert format_equation(equation, digits=6) == (
        "δ_4[1] = δ_5[1] W_5[1,1] σ'(z_4[1]) = (-0.610540)(-1.03849)(0.246640) = 0.156380"
    )
    sigmoid = Equation("a_2[1]", "σ(z_2[1])", Sigmoid(Number(-0.3)), 0.4256)
    assert format_equation(sigmoid) == "a_2[1] = σ(z_2[1]) = 1/(1 + e^{0.3000}) = 0.4256"
    repeated = Equation("∂L/∂b_2[1]", "δ_2[1]", Sum((Number(0.25),)), 0.25)
    assert format_equation(repeated) == "∂L/∂b_2[1] = δ_2[1] = 0.2500"  # no "= 0.2500 = 0.2500"


def test_format_expression_keeps_signs_apart_and_data_exact():
    sum_ = Sum((Product((Number(1.0, exact=True), Number(-0.5))), Number(-0.25)))
    assert format_expression(sum_) == "(1)(-0.5000) + (-0.2500)"
    step = Difference(Number(0.3), Product((Number(0.5, exact=True), Number(-0.1))))
    assert format_expression(step) == "0.3000 - (0.5)(-0.1000)"
    output = Quotient(Difference(Number(0.75), Number(1.0, exact=True)), Number(4.0, exact=True))
    assert format_expression(output) == "(0.7500 - 1)/4"
    with pytest.raises(TypeError):
        format_expression("0.5")


def test_numbers_and_data_are_formatted_like_the_tables():
    assert format_number(-0.0) == "0.000"  # 0 × a negative δ
    assert format_number(np.float64(0.15638), 3) == "0.156"
    assert format_data(1.0) == "1" and format_data(0.0) == "0"
    assert format_data(-0.7453125) == "-0.7453"
