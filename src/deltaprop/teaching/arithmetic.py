"""The worked example as arithmetic you can redo on a calculator, one line per number.

`forward_equations`, `backward_equations` and `update_equations` turn a `WorkedExample` into
`Equation`s: the number's name, its formula in the row-form notation, the same formula with the
numbers put in (a small expression tree of the recorded values), and the recorded result.
Nothing is recomputed here: every leaf and every result is a value that backprop_trace returned
(or the data, η and N·n_L), so a line's result is the exact float64 value, rounded only when
printed. `format_equation` writes a line as text, e.g.

    δ_4[1] = δ_5[1] W_5[1,1] σ'(z_4[1]) = (0.3897)(-1.038)(0.2465) = -0.09971

The formula is written in the notation of docs/backprop.md (− for minus); the numbers in plain
ASCII, (a)(b) for a product and e^{x} for the exponential, so they can be typed into a calculator.

Indices are 1-based as in the textbook: [j] is unit j when N = 1, [n,j] example n otherwise;
W_l[i,j] joins unit i of layer l − 1 to unit j of layer l (the textbook's w^l_{ji}).
"""

from __future__ import annotations

from dataclasses import dataclass

from deltaprop.teaching.worked_example import LayerRecord, WorkedExample

DEFAULT_DIGITS = 4
MINUS = "-"  # numbers and the minus between them: ASCII, as a calculator takes them


@dataclass(frozen=True)
class Number:
    """A leaf. `exact` numbers (data, η, counts) are printed as they are, the rest rounded."""

    value: float
    exact: bool = False


@dataclass(frozen=True)
class Product:
    factors: tuple[Expression, ...]


@dataclass(frozen=True)
class Sum:
    terms: tuple[Expression, ...]


@dataclass(frozen=True)
class Difference:
    left: Expression
    right: Expression


@dataclass(frozen=True)
class Quotient:
    numerator: Expression
    denominator: Expression


@dataclass(frozen=True)
class Sigmoid:
    """σ(z) = 1/(1 + e^{−z}), written with the number z."""

    argument: Number


Expression = Number | Product | Sum | Difference | Quotient | Sigmoid


@dataclass(frozen=True)
class Equation:
    """quantity = formula = numbers = result, e.g. a_2[1] = σ(z_2[1]) = 1/(1 + e^{-0.3}) = 0.57.

    An update reads `W_2[1,1] ← W_2[1,1] − η ∂L/∂W_2[1,1] = ...`: its relation is ←.
    """

    quantity: str  # "δ_4[1]"
    formula: str  # "δ_5[1] W_5[1,1] σ'(z_4[1])"
    numbers: Expression  # the formula with the recorded values in it
    result: float  # the recorded value of the quantity
    relation: str = "="


def _index(n: int, j: int, n_examples: int) -> str:
    """[j] for a batch of one, else [n,j]; 1-based."""
    return f"[{j + 1}]" if n_examples == 1 else f"[{n + 1},{j + 1}]"


def _below(layer: int) -> str:
    return "x" if layer == 2 else f"a_{layer - 1}"


def _input_value(example: WorkedExample, record: LayerRecord, n: int, i: int) -> Number:
    """a_{l−1}[n, i]: the data itself (exact) at layer 2, else a recorded activation."""
    if record.layer == 2:
        return Number(float(example.x[n, i]), exact=float(example.x[n, i]).is_integer())
    return Number(float(example.layer(record.layer - 1).activation[n, i]))


def forward_equations(example: WorkedExample, layer: int) -> list[Equation]:
    """z_l[n,j] = Σ_i a_{l−1}[n,i] W_l[i,j] + b_l[j] and a_l[n,j] = σ(z_l[n,j])."""
    record, equations = example.layer(layer), []
    n_examples, (n_below, n_units) = example.x.shape[0], record.weights.shape
    below = _below(layer)
    for n in range(n_examples):
        for j in range(n_units):
            at, z = _index(n, j, n_examples), float(record.pre_activation[n, j])
            inputs = [_index(n, i, n_examples) for i in range(n_below)]
            formula = " + ".join(f"{below}{k} W_{layer}[{i + 1},{j + 1}]"
                                 for i, k in enumerate(inputs)) + f" + b_{layer}[{j + 1}]"
            terms = tuple(
                Product((_input_value(example, record, n, i), Number(float(record.weights[i, j]))))
                for i in range(n_below)
            ) + (Number(float(record.biases[j])),)
            equations.append(Equation(f"z_{layer}{at}", formula, Sum(terms), z))
            equations.append(Equation(
                f"a_{layer}{at}", f"σ(z_{layer}{at})", Sigmoid(Number(z)),
                float(record.activation[n, j]),
            ))
    return equations


def _delta_equations(example: WorkedExample, record: LayerRecord) -> list[Equation]:
    """δ_L = (a_L − y)/(N·n_L) at the output; σ' and δ_l = (Σ_k δ_{l+1} W_{l+1}) σ' below it."""
    layer, equations = record.layer, []
    n_examples, n_units = record.delta.shape
    count = n_examples * n_units if layer == len(example.sizes) else None
    above = None if count else example.layer(layer + 1)
    for n in range(n_examples):
        for j in range(n_units):
            at, a = _index(n, j, n_examples), float(record.activation[n, j])
            delta = float(record.delta[n, j])
            if count:  # δ_L[n,j] = (a_L[n,j] − y[n,j]) / (N·n_L)
                numbers = Quotient(
                    Difference(Number(a), Number(float(example.y[n, j]), exact=True)),
                    Number(float(count), exact=True),
                )
                formula = f"(a_{layer}{at} − y{at}) / (N·n_{layer})"
                equations.append(Equation(f"δ_{layer}{at}", formula, numbers, delta))
                continue
            slope = float(record.sigmoid_derivative[n, j])  # σ'(z_l) = a_l(1 − a_l)
            equations.append(Equation(
                f"σ'(z_{layer}{at})", f"a_{layer}{at}(1 − a_{layer}{at})",
                Product((Number(a), Difference(Number(1.0, exact=True), Number(a)))), slope,
            ))
            upper = [  # δ_{l+1}[n,k] W_{l+1}[j,k], k over the units of layer l + 1
                (f"δ_{layer + 1}{_index(n, k, n_examples)} W_{layer + 1}[{j + 1},{k + 1}]",
                 Product((Number(float(above.delta[n, k])), Number(float(above.weights[j, k])))))
                for k in range(above.delta.shape[1])
            ]
            backpropagated = " + ".join(text for text, _ in upper)
            if len(upper) > 1:
                backpropagated = f"({backpropagated})"
            if len(upper) == 1:  # one unit above: (δ)(w)(σ'), a plain product
                numbers = Product((*upper[0][1].factors, Number(slope)))
            else:  # ((δ)(w) + (δ)(w))(σ')
                numbers = Product((Sum(tuple(term for _, term in upper)), Number(slope)))
            formula = f"{backpropagated} σ'(z_{layer}{at})"
            equations.append(Equation(f"δ_{layer}{at}", formula, numbers, delta))
    return equations


def _gradient_equations(example: WorkedExample, record: LayerRecord) -> list[Equation]:
    """∂L/∂W_l[i,j] = Σ_n a_{l−1}[n,i] δ_l[n,j] and ∂L/∂b_l[j] = Σ_n δ_l[n,j]."""
    layer, equations = record.layer, []
    n_examples, (n_below, n_units) = example.x.shape[0], record.weights.shape
    below = _below(layer)
    for j in range(n_units):
        for i in range(n_below):
            formula = " + ".join(
                f"{below}{_index(n, i, n_examples)} δ_{layer}{_index(n, j, n_examples)}"
                for n in range(n_examples)
            )
            terms = tuple(
                Product((_input_value(example, record, n, i), Number(float(record.delta[n, j]))))
                for n in range(n_examples)
            )
            equations.append(Equation(
                f"∂L/∂W_{layer}[{i + 1},{j + 1}]", formula, Sum(terms),
                float(record.grad_weights[i, j]),
            ))
        deltas = [f"δ_{layer}{_index(n, j, n_examples)}" for n in range(n_examples)]
        terms = tuple(Number(float(record.delta[n, j])) for n in range(n_examples))
        equations.append(Equation(
            f"∂L/∂b_{layer}[{j + 1}]", " + ".join(deltas), Sum(terms),
            float(record.grad_biases[j]),
        ))
    return equations


def backward_equations(example: WorkedExample, layer: int) -> list[Equation]:
    """δ_l (with σ'(z_l) below the output), then ∂L/∂W_l and ∂L/∂b_l."""
    record = example.layer(layer)
    return _delta_equations(example, record) + _gradient_equations(example, record)


def update_equations(example: WorkedExample, layer: int) -> list[Equation]:
    """W_l[i,j] − η ∂L/∂W_l[i,j] and b_l[j] − η ∂L/∂b_l[j]: the step θ ← θ − η ∂L/∂θ."""
    record, equations = example.layer(layer), []
    eta = Number(example.learning_rate, exact=True)
    leaves = [
        (f"W_{layer}[{i + 1},{j + 1}]", record.weights[i, j], record.grad_weights[i, j],
         record.new_weights[i, j])
        for j in range(record.weights.shape[1])
        for i in range(record.weights.shape[0])
    ] + [
        (f"b_{layer}[{j + 1}]", record.biases[j], record.grad_biases[j], record.new_biases[j])
        for j in range(record.biases.shape[0])
    ]
    for name, before, gradient, after in leaves:
        numbers = Difference(Number(float(before)), Product((eta, Number(float(gradient)))))
        equations.append(
            Equation(name, f"{name} − η ∂L/∂{name}", numbers, float(after), relation="←")
        )
    return equations


def format_number(value: float, digits: int = DEFAULT_DIGITS) -> str:
    """`digits` significant digits, trailing zeros kept: 0.1 -> '0.1000', 1.2e-5 -> '1.200e-05'.

    −0.0 (0 times a negative δ) is written 0.000: a sign on a zero carries no information.
    """
    return f"{float(value) + 0.0:#.{digits}g}"


def _exact(value: float) -> str:
    return f"{int(value)}" if float(value).is_integer() else repr(float(value))


def format_data(value: float, digits: int = DEFAULT_DIGITS) -> str:
    """A data value (an input x, a target y): a whole number as it is (0, 1), else rounded."""
    return _exact(value) if float(value).is_integer() else format_number(value, digits)


def _number(number: Number, digits: int) -> str:
    return _exact(number.value) if number.exact else format_number(number.value, digits)


def _signed(number: Number, digits: int) -> str:
    """A number after + or −: in parentheses when negative, so no sign follows a sign."""
    text = _number(number, digits)
    return f"({text})" if text.startswith(MINUS) else text


def format_expression(expression: Expression, digits: int = DEFAULT_DIGITS) -> str:
    """The numbers of a formula as text: products as (a)(b), σ(z) as 1/(1 + e^{−z})."""
    if isinstance(expression, Number):
        return _number(expression, digits)
    if isinstance(expression, Product):
        return "".join(f"({format_expression(factor, digits)})" for factor in expression.factors)
    if isinstance(expression, Sum) and len(expression.terms) == 1:
        return format_expression(expression.terms[0], digits)
    if isinstance(expression, Sum):
        return " + ".join(
            _signed(term, digits) if isinstance(term, Number) else format_expression(term, digits)
            for term in expression.terms
        )
    if isinstance(expression, Difference):
        right = expression.right
        right_text = (_signed(right, digits) if isinstance(right, Number)
                      else format_expression(right, digits))
        return f"{format_expression(expression.left, digits)} {MINUS} {right_text}"
    if isinstance(expression, Quotient):
        numerator = format_expression(expression.numerator, digits)
        return f"({numerator})/{format_expression(expression.denominator, digits)}"
    if isinstance(expression, Sigmoid):  # e^{−z}, with −z written as one number
        return f"1/(1 + e^{{{format_number(-expression.argument.value, digits)}}})"
    raise TypeError(f"not an expression: {expression!r}")


def format_equation(equation: Equation, digits: int = DEFAULT_DIGITS) -> str:
    """`quantity = formula = numbers = result`, dropping a step that repeats the one before."""
    parts = [equation.formula]
    for part in (format_expression(equation.numbers, digits), format_number(equation.result, digits)):
        if part != parts[-1]:
            parts.append(part)
    return f"{equation.quantity} {equation.relation} " + " = ".join(parts)
