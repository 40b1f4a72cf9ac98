"""The network as a picture: every unit with its a and δ, every edge with its w and ∂L/∂w.

`picture_of_example(example)` (the worked example) and `picture_at_step(history, t)` (a step of
training, history.py) pick the numbers of one example; `format_svg(picture)` draws them:

- layer l = 1..L is column l, numbered as the textbook numbers it (layer 1 is the input x);
- unit j of layer l shows a_l[j] inside, a bar beside it from 0 to 1 (a saturated unit's bar is
  empty or full), and below it δ_l[j], b_l[j] and ∂L/∂b_l[j]; its colour is δ's sign (blue > 0,
  red < 0) and its strength |δ| against the largest |δ| of the picture, so a vanishing δ fades;
- the edge from unit i of layer l − 1 to unit j of layer l carries W_l[i,j] (the textbook's
  w^l_{ji}) and ∂L/∂W_l[i,j]; its width grows with |∂L/∂W_l[i,j]|, its colour is the sign.

Every number is a value of the record; nothing is computed here but positions, colours and
widths. Each number sits in a <tspan data-q=... data-layer=... data-i=... data-j=...>, which the page
(page.py) rewrites as it steps through training.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import numpy as np

from deltaprop.teaching.arithmetic import DEFAULT_DIGITS, format_data, format_number
from deltaprop.teaching.history import TrainingHistory
from deltaprop.teaching.worked_example import WorkedExample

COLUMN, ROW, RADIUS = 310, 170, 26  # px between layers, between units; a unit's radius
MARGIN, TOP, LEGEND = 90, 64, 120  # px left and right, above the first unit, for the legend
POSITIVE, NEGATIVE, NEUTRAL = "#2563eb", "#dc2626", "#9ca3af"
INPUT_FILL = "#f3f4f6"
MIN_OPACITY, MIN_WIDTH, MAX_WIDTH = 0.12, 0.8, 8.0
STYLE = (
    "text{font-family:'DejaVu Sans',Arial,sans-serif;font-size:11px;fill:#111}"
    ".title{font-size:13px;font-weight:bold}.small{font-size:10px;fill:#444}"
    ".edge-label{font-size:10px;paint-order:stroke;stroke:#fff;stroke-width:3px}"
    ".value-a{font-size:11px;font-weight:bold}"
)


@dataclass(frozen=True, eq=False)
class Picture:
    """The numbers one picture shows: one example's a and δ, the batch's parameters and
    gradients. Per-layer tuples hold layer l at index l − 2, except `activations` (l − 1)."""

    sizes: tuple[int, ...]  # (n_1, ..., n_L)
    activations: tuple[np.ndarray, ...]  # a_l of the example, (n_l,), l = 1..L; a_1 = x
    deltas: tuple[np.ndarray, ...]  # δ_l = ∂L/∂z_l of the example, (n_l,)
    weights: tuple[np.ndarray, ...]  # W_l, (n_{l−1}, n_l)
    grad_weights: tuple[np.ndarray, ...]  # ∂L/∂W_l over the batch, (n_{l−1}, n_l)
    biases: tuple[np.ndarray, ...]  # b_l, (n_l,)
    grad_biases: tuple[np.ndarray, ...]  # ∂L/∂b_l, (n_l,)
    target: np.ndarray  # y of the example, (n_L,)
    loss: float  # L of the batch
    example: int  # n, 0-based
    n_examples: int  # N


def picture_of_example(example: WorkedExample, n: int = 0) -> Picture:
    """The worked example's numbers, example n (0-based) of its batch."""
    layers = example.forward_layers
    return Picture(
        sizes=example.sizes,
        activations=(example.x[n], *(record.activation[n] for record in layers)),
        deltas=tuple(record.delta[n] for record in layers),
        weights=tuple(record.weights for record in layers),
        grad_weights=tuple(record.grad_weights for record in layers),
        biases=tuple(record.biases for record in layers),
        grad_biases=tuple(record.grad_biases for record in layers),
        target=example.y[n],
        loss=example.loss_before,
        example=n,
        n_examples=example.x.shape[0],
    )


def picture_at_step(history: TrainingHistory, step: int, n: int = 0) -> Picture:
    """The numbers of training step `step` (before its update), example n (0-based)."""
    return Picture(
        sizes=history.sizes,
        activations=(history.x[n], *(a[step, n] for a in history.activations)),
        deltas=tuple(delta[step, n] for delta in history.deltas),
        weights=tuple(weights[step] for weights in history.weights),
        grad_weights=tuple(grads[step] for grads in history.grad_weights),
        biases=tuple(biases[step] for biases in history.biases),
        grad_biases=tuple(grads[step] for grads in history.grad_biases),
        target=history.y[n],
        loss=float(history.losses[step]),
        example=n,
        n_examples=history.x.shape[0],
    )


@dataclass(frozen=True)
class Layout:
    """Where everything goes: column x of layer l at index l − 1, unit y's per layer."""

    width: int
    height: int
    columns: tuple[float, ...]
    rows: tuple[tuple[float, ...], ...]


def layout(sizes: tuple[int, ...]) -> Layout:
    """Layers left to right, each layer's units centred on the widest layer."""
    widest = max(sizes)
    rows = tuple(
        tuple(TOP + RADIUS + 20 + (j + (widest - n) / 2) * ROW for j in range(n)) for n in sizes
    )
    width = 2 * MARGIN + (len(sizes) - 1) * COLUMN
    return Layout(width, int(TOP + widest * ROW + LEGEND), tuple(
        MARGIN + index * COLUMN for index in range(len(sizes))), rows)


def sign_colour(value: float) -> str:
    """Blue for > 0, red for < 0, grey for 0."""
    return POSITIVE if value > 0 else NEGATIVE if value < 0 else NEUTRAL


def strength(value: float, largest: float) -> float:
    """|value| / largest mapped onto [MIN_OPACITY, 1]: the colour strength of a δ."""
    return MIN_OPACITY + (1 - MIN_OPACITY) * (abs(value) / largest if largest > 0 else 0.0)


def edge_width(value: float, largest: float) -> float:
    """|∂L/∂w| / largest mapped onto [MIN_WIDTH, MAX_WIDTH] px."""
    return MIN_WIDTH + (MAX_WIDTH - MIN_WIDTH) * (abs(value) / largest if largest > 0 else 0.0)


def _largest(arrays) -> float:
    return max(float(np.max(np.abs(array))) for array in arrays)


def _element(tag: str, content: str | None = None, **attributes) -> str:
    """<tag a="1.5" ...>content</tag>; attribute_name → attribute-name, floats to 0.01 px."""
    text = "".join(
        f' {name.rstrip("_").replace("_", "-")}="{f"{value:.2f}" if isinstance(value, float) else value}"'
        for name, value in attributes.items()
    )
    return f"<{tag}{text}/>" if content is None else f"<{tag}{text}>{content}</{tag}>"


def _value(quantity: str, value: float | None, digits: int, **index: int) -> str:
    """A number in a tspan addressed by quantity and 1-based layer/unit indices (data-*)."""
    text = "" if value is None else format_number(value, digits)
    data = {f"data_{key}": number for key, number in index.items()}
    return _element("tspan", text, data_q=quantity, **data)


def _edge(picture: Picture, place: Layout, layer: int, i: int, j: int, largest: float,
          digits: int) -> list[str]:
    """The edge from unit i of layer − 1 to unit j of layer, with W[i,j] and ∂L/∂W[i,j]."""
    weights, grads = picture.weights[layer - 2], picture.grad_weights[layer - 2]
    n_units = weights.shape[1]
    t = 0.5 if n_units == 1 else 0.25 + 0.47 * j / (n_units - 1)  # labels of edges kept apart
    x1, y1 = place.columns[layer - 2] + RADIUS, place.rows[layer - 2][i]
    x2, y2 = place.columns[layer - 1] - RADIUS, place.rows[layer - 1][j]
    x, y = x1 + t * (x2 - x1), y1 + t * (y2 - y1)
    g, index = float(grads[i, j]), {"layer": layer, "i": i + 1, "j": j + 1}
    weight = (f"W_{layer}[{i + 1},{j + 1}] {_value('w', weights[i, j], digits, **index)}"
              f"{_value('w_after', None, digits, **index)}")
    gradient = f"∂L/∂W {_value('grad_w', g, digits, **index)}"
    return [
        f'<g class="edge" data-layer="{layer}" data-i="{i + 1}" data-j="{j + 1}">',
        _element("line", x1=x1, y1=y1, x2=x2, y2=y2, stroke=sign_colour(g),
                 stroke_width=edge_width(g, largest), stroke_opacity="0.75"),
        _element("text", weight, class_="edge-label", x=x, y=y - 4, text_anchor="middle"),
        _element("text", gradient, class_="edge-label", x=x, y=y + 9, text_anchor="middle"),
        "</g>",
    ]


def _below_unit(picture: Picture, layer: int, j: int, digits: int) -> list[tuple[str, str]]:
    """(label, number) rows under unit j: δ, b (and b after the update, on the page), ∂L/∂b, y."""
    index = {"layer": layer, "j": j + 1}
    rows = [
        ("δ", _value("delta", picture.deltas[layer - 2][j], digits, **index)),
        ("b", _value("b", picture.biases[layer - 2][j], digits, **index)
         + _value("b_after", None, digits, **index)),
        ("∂L/∂b", _value("grad_b", picture.grad_biases[layer - 2][j], digits, **index)),
    ]
    if layer == len(picture.sizes):
        target = format_data(float(picture.target[j]), digits)
        rows.append(("y", _element("tspan", target, data_q="y", data_layer=layer, data_j=j + 1)))
    return rows


def _unit(picture: Picture, place: Layout, layer: int, j: int, largest_delta: float,
          digits: int) -> list[str]:
    """Unit j of layer: circle (colour: δ), a inside and its bar, the numbers below it."""
    cx, cy = place.columns[layer - 1], place.rows[layer - 1][j]
    a = float(picture.activations[layer - 1][j])
    if layer == 1:  # the input: x itself, no δ
        fill, opacity, shown = INPUT_FILL, "1", format_data(a, digits)
        number = _element("tspan", shown, data_q="x", data_layer=1, data_j=j + 1)
    else:
        delta = float(picture.deltas[layer - 2][j])
        fill, opacity = sign_colour(delta), f"{strength(delta, largest_delta):.3f}"
        number = _value("a", a, digits, layer=layer, j=j + 1)
    bar = 2 * RADIUS * min(max(a, 0.0), 1.0)  # a from 0 (empty) to 1 (full)
    name = f"x[{j + 1}]" if layer == 1 else f"a_{layer}[{j + 1}]"
    parts = [
        f'<g class="unit" data-layer="{layer}" data-j="{j + 1}">',
        _element("circle", cx=cx, cy=cy, r=RADIUS, fill=fill, fill_opacity=opacity,
                 stroke="#374151"),
        _element("rect", x=cx - RADIUS - 13, y=cy - RADIUS, width=6, height=2 * RADIUS,
                 fill="#fff", stroke="#9ca3af"),
        _element("rect", class_="bar", x=cx - RADIUS - 13, y=cy + RADIUS - bar, width=6,
                 height=bar, fill="#374151"),
        _element("text", name, class_="small", x=cx, y=cy - RADIUS - 6, text_anchor="middle"),
        _element("text", number, class_="value-a", x=cx, y=cy + 4, text_anchor="middle"),
    ]
    if layer > 1:
        parts += [
            _element("text", f"{label} {value}", x=cx, y=cy + RADIUS + 15.0 + 13 * row,
                     text_anchor="middle")
            for row, (label, value) in enumerate(_below_unit(picture, layer, j, digits))
        ]
    return [*parts, "</g>"]


def _titles(picture: Picture, place: Layout) -> list[str]:
    last, parts = len(picture.sizes), []
    for layer, (x, n) in enumerate(zip(place.columns, picture.sizes, strict=True), start=1):
        kind = " · input" if layer == 1 else " · output" if layer == last else ""
        parts += [
            _element("rect", class_="column", data_layer=layer, x=x - COLUMN / 2 + 8, y=4,
                     width=COLUMN - 16, height=place.height - LEGEND - 4, rx=8, fill="none"),
            _element("text", f"layer {layer}{kind}", class_="title", x=x, y=24,
                     text_anchor="middle"),
            _element("text", f"n_{layer} = {n}", class_="small", x=x, y=40, text_anchor="middle"),
        ]
    return parts


def _legend(picture: Picture, place: Layout, digits: int) -> list[str]:
    """What the picture shows: the example, the loss, the colour and width scales."""
    y, x = place.height - LEGEND + 22, MARGIN - 60
    inputs = ", ".join(format_data(float(v), digits) for v in picture.activations[0])
    targets = ", ".join(format_data(float(v), digits) for v in picture.target)
    targets = targets if len(picture.target) == 1 else f"({targets})"
    example = (
        f'example {_element("tspan", str(picture.example + 1), data_q="example")} of '
        f"N = {picture.n_examples}: x = ({_element('tspan', inputs, data_q='inputs')}), "
        f"y = {_element('tspan', targets, data_q='targets')}; loss L = "
        f"{_value('loss', picture.loss, digits)}"
    )
    scales = (
        "δ and ∂L/∂w: blue &gt; 0, red &lt; 0; a unit’s colour is stronger for larger |δ| "
        f"(largest here {_value('largest_delta', _largest(picture.deltas), digits)}); an edge is "
        f"wider for larger |∂L/∂w| "
        f"(largest {_value('largest_grad', _largest(picture.grad_weights), digits)})."
    )
    meaning = ("Inside a unit a = σ(z), and its bar from 0 to 1. δ = ∂L/∂z of the mean loss; "
               "∂L/∂w and ∂L/∂b are summed over the N examples.")
    indices = ("W_l[i,j] (the textbook’s w^l_{ji}) joins unit i of layer l − 1 to unit j of "
               "layer l: z_l = a_{l−1} W_l + b_l.")
    return [
        _element("text", example, x=x, y=y),
        _element("circle", cx=x + 6, cy=y + 17, r=6, fill=POSITIVE),
        _element("circle", cx=x + 22, cy=y + 17, r=6, fill=NEGATIVE),
        _element("text", scales, x=x + 34, y=y + 21),
        _element("text", meaning, x=x, y=y + 40),
        _element("text", indices, x=x, y=y + 58),
    ]


def format_svg(picture: Picture, digits: int = DEFAULT_DIGITS) -> str:
    """A standalone SVG document of the picture; numbers to `digits` significant digits."""
    place = layout(picture.sizes)
    largest_delta = _largest(picture.deltas)
    largest_grad = _largest(picture.grad_weights)
    edges = [
        part
        for layer in range(2, len(picture.sizes) + 1)
        for j in range(picture.sizes[layer - 1])
        for i in range(picture.sizes[layer - 2])
        for part in _edge(picture, place, layer, i, j, largest_grad, digits)
    ]
    units = [
        part
        for layer, n in enumerate(picture.sizes, start=1)
        for j in range(n)
        for part in _unit(picture, place, layer, j, largest_delta, digits)
    ]
    title = escape(f"The network {'-'.join(map(str, picture.sizes))}: every a, δ, w and ∂L/∂w")
    width, height = place.width, place.height
    header = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
              f'viewBox="0 0 {width} {height}" role="img" aria-label="{title}">')
    return "\n".join([
        header,
        f"<title>{title}</title>",
        f"<style>{STYLE}</style>",
        _element("rect", width=place.width, height=place.height, fill="#fff"),
        *_titles(picture, place), *edges, *units, *_legend(picture, place, digits),
        "</svg>",
        "",
    ])
