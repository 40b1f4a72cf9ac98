"""The network as a picture: every unit with its z, a and δ, every edge with its w and ∂L/∂w.

`picture_of_example(example)` (the worked example) and `picture_at_step(history, t)` (a step of
training, history.py) pick the numbers of one example; `format_svg(picture)` draws them.

Layer l = 1..L is column l, numbered as the textbook numbers it (layer 1 is the input x). Each
unit j of layer l is a card, read top to bottom as z_l[j] = Σ_i a_{l−1}[i] W_l[i,j] + b_l[j]:

- for each unit i of layer l − 1, W_l[i,j] (the textbook's wˡⱼᵢ), ∂L/∂W_l[i,j] and, after
  "→", its value after the update; the edge from unit i ends at the left end of its W line;
- b_l[j], ∂L/∂b_l[j] and its value after the update;
- z_l[j], a_l[j] = σ(z_l[j]) and δ_l[j] (and y[j] at the output).

The unit's circle sits at the right of its a line, with a's bar from 0 to 1 beside it (a
saturated unit's bar is empty or full); its colour is δ's sign (blue > 0, red < 0) and its
strength |δ| against the largest |δ| shown, so a vanishing δ fades. An edge is as wide as
|∂L/∂W_l[i,j]| is large, its colour the sign. Edges run only in the gaps between columns, from a
circle to a card's left side, so no edge crosses a label; cards are stacked with gaps, one text
line each, so no two labels overlap. Every size is in units of the font size FONT: the picture
is at most READABLE_WIDTH_IN_EM font sizes wide up to five layers, so shown 830 px wide (a README)
its text is at least 9 px.

Every number is a value of the record; nothing is computed here but positions, colours and
widths. Each number sits in a <tspan data-q=... data-layer=... data-i=... data-j=...>, which the page
(page.py, static/page.js) rewrites as it steps through training; a clause that only makes sense
once its number is known sits in a <tspan data-when=...>, which the page hides until then.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import numpy as np

from deltaprop.teaching.arithmetic import DEFAULT_DIGITS, format_data, format_number
from deltaprop.teaching.history import TrainingHistory
from deltaprop.teaching.worked_example import WorkedExample

FONT, TITLE_FONT, LINE = 13, 14, 16  # px: the text, the column titles, one line of a card
RADIUS, BAR_WIDTH = 15, 6  # px: a unit's circle, a's bar
PAD_X, PAD_Y, GROUP_GAP, CARD_GAP = 6, 3, 4, 16  # px inside a card, between its groups, cards
FAN, MARGIN, HEADER = 56, 8, 50  # px: the gap the edges cross, the sides, above the first card
INDENT = 10  # px: ∂L/∂W and → under their W
POSITIVE, NEGATIVE, NEUTRAL = "#2563eb", "#dc2626", "#9ca3af"
INPUT_FILL, CARD_STROKE = "#f3f4f6", "#d1d5db"
MIN_OPACITY, MIN_WIDTH, MAX_WIDTH = 0.12, 0.8, 8.0
READABLE_WIDTH_IN_EM = 830 / 9  # at most this many FONTs wide: ≥ 9 px when shown 830 px wide
# Scoped to the picture: inlined into a page, it styles no other SVG.
STYLE = (
    f".dp-network text{{font-family:'DejaVu Sans',Arial,sans-serif;font-size:{FONT}px;fill:#111}}"
    f".dp-network .title{{font-size:{TITLE_FONT}px;font-weight:bold}}"
    ".dp-network .name{fill:#374151}.dp-network .after{fill:#065f46}"
)

# Advance widths of DejaVu Sans in em (the picture's first font; Arial and Helvetica are
# narrower), to reserve room for every label; anything else counts as 1 em.
_ADVANCES = {
    0.17: "ₗⱼˡ", 0.18: "ᵢ", 0.27: "'", 0.28: "ijl", 0.29: "IJ", 0.32: " ,.·’", 0.34: "/:;\\|",
    0.35: "f", 0.36: "-", 0.38: "ᵀ", 0.39: "()[]t", 0.4: "!₀₁₂₃₄₅₆₇₈₉⁰¹²³⁴⁵⁶⁷⁸⁹", 0.41: "r",
    0.46: '"',
    0.5: "*_`‖–", 0.52: "sz∂", 0.53: "?₋", 0.55: "c", 0.56: "L", 0.58: "Fk", 0.59: "vxy",
    0.6: "P", 0.61: "TYaoδθ", 0.62: "e", 0.63: "ESbdghnpquσΣη", 0.64: "$0123456789{}",
    0.66: "K", 0.68: "AV", 0.69: "BRXZ", 0.7: "C", 0.73: "U", 0.75: "HN", 0.77: "DG",
    0.78: "&", 0.79: "OQ", 0.82: "w", 0.84: "#+<=>^~−→←✓✗⊙", 0.86: "M", 0.95: "%",
    0.97: "m", 0.99: "W", 1.0: "@…",
}
_ADVANCE = {character: width for width, characters in _ADVANCES.items() for character in characters}
BOLD = 1.15  # DejaVu Sans Bold is about this much wider


def text_width(text: str, size: float = FONT, bold: bool = False) -> float:
    """The width in px of `text` at `size` px (an upper bound for the picture's fonts)."""
    return sum(_ADVANCE.get(character, 1.0) for character in text) * size * (BOLD if bold else 1)


def subscript(number: int) -> str:
    """3 -> '₃': a layer index written as a subscript, in plain characters."""
    return str(number).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


def superscript(number: int) -> str:
    """3 -> '³'."""
    return str(number).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))


@dataclass(frozen=True, eq=False)
class Picture:
    """The numbers one picture shows: one example's z, a and δ, the batch's parameters, their
    gradients and their values after the update. Per-layer tuples hold layer l at index l − 2,
    except `activations` (l − 1)."""

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
    pre_activations: tuple[np.ndarray, ...] = ()  # z_l of the example, (n_l,)
    new_weights: tuple[np.ndarray, ...] = ()  # W_l − η ∂L/∂W_l; () if not known
    new_biases: tuple[np.ndarray, ...] = ()  # b_l − η ∂L/∂b_l


def picture_of_example(example: WorkedExample, n: int = 0) -> Picture:
    """The worked example's numbers, example n (0-based) of its batch, with its update."""
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
        pre_activations=tuple(record.pre_activation[n] for record in layers),
        new_weights=tuple(record.new_weights for record in layers),
        new_biases=tuple(record.new_biases for record in layers),
    )


def picture_at_step(history: TrainingHistory, step: int, n: int = 0) -> Picture:
    """The numbers of training step `step` (before its update, and the update), example n."""
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
        pre_activations=tuple(z[step, n] for z in history.pre_activations),
        new_weights=tuple(weights[step + 1] for weights in history.weights),
        new_biases=tuple(biases[step + 1] for biases in history.biases),
    )


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


def _value(quantity: str, text: str, **index: int) -> str:
    """A number's text in a tspan addressed by quantity and 1-based layer/unit indices."""
    data = {f"data_{key}": number for key, number in index.items()}
    return _element("tspan", text, data_q=quantity, **data)


# ------------------------------------------------------------------------------ the cards


@dataclass(frozen=True)
class Line:
    """One text line of a card: its label, its number (markup) and the room it needs (px)."""

    label: str
    number: str
    width: float
    indent: float = 0.0
    starts_group: bool = False  # a small gap above it


@dataclass(frozen=True)
class Card:
    """Unit j of layer l as lines of text; the circle sits beside line `unit_line`, and the edge
    from unit i of the layer below ends at line `ports[i]`."""

    layer: int
    j: int  # 0-based
    lines: tuple[Line, ...]
    unit_line: int
    ports: tuple[int, ...] = ()

    @property
    def height(self) -> float:
        groups = sum(line.starts_group for line in self.lines[1:])
        return len(self.lines) * LINE + groups * GROUP_GAP + 2 * PAD_Y

    def line_top(self, k: int) -> float:
        """The top of line k, from the card's top."""
        groups = sum(line.starts_group for line in self.lines[1 : k + 1])
        return PAD_Y + k * LINE + groups * GROUP_GAP


def _widest_number(digits: int) -> float:
    """Room for any number format_number writes from 1e-99 to 1e99 in size: a sign, `digits`
    digits, a point, e+05 (a picture's own numbers always get room: see _line)."""
    return text_width("-" + "0" * digits + ".e+00")


def _line(label: str, quantity: str, text: str, number_room: float, indent: float = 0.0,
          starts_group: bool = False, **index: int) -> Line:
    room = indent + text_width(label + " ") + max(number_room, text_width(text))
    return Line(label, _value(quantity, text, **index), room, indent, starts_group)


def _parameter_lines(name: str, quantity: str, value: float, grad: float, after: float | None,
                     gradient_name: str, digits: int, **index: int) -> list[Line]:
    """A parameter's three lines: its value, ∂L/∂ of it, and → its value after the update."""
    room = _widest_number(digits)
    after_text = "" if after is None else f"→ {format_number(after, digits)}"
    return [
        _line(name, quantity, format_number(value, digits), room, starts_group=True, **index),
        _line(gradient_name, f"grad_{quantity}", format_number(grad, digits), room, INDENT,
              **index),
        _line("", f"{quantity}_after", after_text, text_width("→ ") + room, INDENT, **index),
    ]


def _card(picture: Picture, layer: int, j: int, digits: int) -> Card:
    """The card of unit j (0-based) of layer l ≥ 2."""
    index, at, room = layer - 2, {"layer": layer, "j": j + 1}, _widest_number(digits)
    known_after = bool(picture.new_weights)
    lines: list[Line] = []
    ports = []
    for i in range(picture.sizes[layer - 2]):
        ports.append(len(lines))
        after = picture.new_weights[index][i, j] if known_after else None
        lines += _parameter_lines(
            f"W{subscript(layer)}[{i + 1},{j + 1}]", "w", picture.weights[index][i, j],
            picture.grad_weights[index][i, j], after, "∂L/∂W", digits, layer=layer, i=i + 1,
            j=j + 1)
    after = picture.new_biases[index][j] if known_after else None
    lines += _parameter_lines(f"b{subscript(layer)}[{j + 1}]", "b", picture.biases[index][j],
                              picture.grad_biases[index][j], after, "∂L/∂b", digits, **at)
    name = f"{subscript(layer)}[{j + 1}]"
    z = picture.pre_activations[index][j] if picture.pre_activations else None
    lines.append(_line(f"z{name}", "z", "" if z is None else format_number(z, digits), room,
                       starts_group=True, **at))
    unit_line = len(lines)
    lines.append(_line(f"a{name}", "a", format_number(picture.activations[layer - 1][j], digits),
                       room, **at))
    lines.append(_line(f"δ{name}", "delta", format_number(picture.deltas[index][j], digits),
                       room, **at))
    if layer == len(picture.sizes):
        target = format_data(float(picture.target[j]), digits)
        lines.append(_line(f"y[{j + 1}]", "y", target, text_width(target), **at))
    return Card(layer, j, tuple(lines), unit_line, tuple(ports))


def _input_card(picture: Picture, j: int, digits: int) -> Card:
    shown = format_data(float(picture.activations[0][j]), digits)  # data: the same every step
    line = _line(f"x[{j + 1}]", "x", shown, text_width(shown), layer=1, j=j + 1)
    return Card(1, j, (line,), 0)


def cards(picture: Picture, digits: int = DEFAULT_DIGITS) -> list[list[Card]]:
    """The cards of every layer, layer 1 first."""
    columns = [[_input_card(picture, j, digits) for j in range(picture.sizes[0])]]
    for layer in range(2, len(picture.sizes) + 1):
        columns.append([_card(picture, layer, j, digits) for j in range(picture.sizes[layer - 1])])
    return columns


# ----------------------------------------------------------------------------- the layout


@dataclass(frozen=True)
class Layout:
    """Where everything goes, per layer l at index l − 1: the left side of its cards, their
    text width, each card's top; the picture's width and the bottom of the cards."""

    width: float
    bottom: float
    lefts: tuple[float, ...]
    text_widths: tuple[float, ...]
    tops: tuple[tuple[float, ...], ...]

    def card_width(self, index: int) -> float:
        return PAD_X + self.text_widths[index] + 6 + BAR_WIDTH + 4 + 2 * RADIUS + 3

    def circle_x(self, index: int) -> float:
        return self.lefts[index] + self.card_width(index) - 3 - RADIUS

    def centre(self, index: int) -> float:
        return self.lefts[index] + self.card_width(index) / 2


def _subtitle(layer: int, size: int, last: int) -> str:
    """Under "layer l": its kind and its size, e.g. "input · n₁ = 2"."""
    kind = "input · " if layer == 1 else "output · " if layer == last else ""
    return f"{kind}n{subscript(layer)} = {size}"


def layout(columns: list[list[Card]]) -> Layout:
    """Columns left to right, FAN apart (wider where a title is wider than its cards); each
    column's cards stacked CARD_GAP apart and centred on the tallest column."""
    last = len(columns)
    text_widths = tuple(max(line.width for card in column for line in card.lines)
                        for column in columns)
    card_widths = [PAD_X + width + 6 + BAR_WIDTH + 4 + 2 * RADIUS + 3 for width in text_widths]
    sizes = [len(column) for column in columns]
    bands = [max(card, text_width(_subtitle(layer, size, last)) + 8)
             for layer, (card, size) in enumerate(zip(card_widths, sizes, strict=True), start=1)]
    lefts, x = [], MARGIN
    for band, card in zip(bands, card_widths, strict=True):
        lefts.append(x + (band - card) / 2)
        x += band + FAN
    heights = [sum(card.height for card in column) + CARD_GAP * (len(column) - 1)
               for column in columns]
    tallest = max(heights)
    tops = []
    for column, height in zip(columns, heights, strict=True):
        top, column_tops = HEADER + (tallest - height) / 2, []
        for card in column:
            column_tops.append(top)
            top += card.height + CARD_GAP
        tops.append(tuple(column_tops))
    return Layout(x - FAN + MARGIN, HEADER + tallest, tuple(lefts), text_widths, tuple(tops))


def _centre_of_line(place: Layout, index: int, card_index: int, card: Card, k: int) -> float:
    return place.tops[index][card_index] + card.line_top(k) + LINE / 2


def _baseline(top: float) -> float:
    """The baseline of a line whose box starts at `top`: the font's box (1.16 em) centred."""
    return top + LINE / 2 + 0.35 * FONT


# ------------------------------------------------------------------------------ drawing


def _draw_card(picture: Picture, place: Layout, card: Card, largest_delta: float) -> list[str]:
    index = card.layer - 1
    left, top = place.lefts[index], place.tops[index][card.j]
    cx = place.circle_x(index)
    cy = top + card.line_top(card.unit_line) + LINE / 2
    a = float(picture.activations[index][card.j])
    if card.layer == 1:
        fill, opacity = INPUT_FILL, "1"
    else:
        delta = float(picture.deltas[index - 1][card.j])
        fill, opacity = sign_colour(delta), f"{strength(delta, largest_delta):.3f}"
    bar = 2 * RADIUS * min(max(a, 0.0), 1.0)  # a from 0 (empty) to 1 (full)
    bar_x = cx - RADIUS - 4 - BAR_WIDTH
    parts = [
        f'<g class="unit" data-layer="{card.layer}" data-j="{card.j + 1}">',
        _element("rect", class_="card", x=left, y=top, width=place.card_width(index),
                 height=card.height, rx=6, fill="none", stroke=CARD_STROKE),
    ]
    if card.layer > 1:  # a's bar; the input x is not a σ, so it has none
        parts += [
            _element("rect", x=bar_x, y=cy - RADIUS, width=BAR_WIDTH, height=2 * RADIUS,
                     fill="#fff", stroke="#9ca3af"),
            _element("rect", class_="bar", x=bar_x, y=cy + RADIUS - bar, width=BAR_WIDTH,
                     height=bar, fill="#374151"),
        ]
    parts += [
        # An opaque disc under the unit: its colour is the same on a highlighted column.
        _element("circle", class_="backing", cx=cx, cy=cy, r=RADIUS, fill="#fff"),
        _element("circle", class_="unit-fill", cx=cx, cy=cy, r=RADIUS, fill=fill,
                 fill_opacity=opacity, stroke="#374151"),
    ]
    for k, line in enumerate(card.lines):
        label = f'<tspan class="name">{escape(line.label)}</tspan> ' if line.label else ""
        after = ' class="after"' if "_after" in line.number else ""
        parts.append(f'<text x="{left + PAD_X + line.indent:.2f}" '
                     f'y="{_baseline(top + card.line_top(k)):.2f}"{after}>{label}{line.number}</text>')
    return [*parts, "</g>"]


def _draw_edges(picture: Picture, place: Layout, columns: list[list[Card]],
                largest: float) -> list[str]:
    """Edge (i → j) of layer l: from unit i's circle to the W_l[i,j] line of unit j's card."""
    parts = []
    for index in range(1, len(columns)):
        layer, below = index + 1, columns[index - 1]
        grads = picture.grad_weights[index - 1]
        x1, x2 = place.circle_x(index - 1) + RADIUS, place.lefts[index] - 1
        for card in columns[index]:
            for i, port in enumerate(card.ports):
                source = below[i]
                y1 = _centre_of_line(place, index - 1, i, source, source.unit_line)
                y2 = _centre_of_line(place, index, card.j, card, port)
                g = float(grads[i, card.j])
                parts += [
                    f'<g class="edge" data-layer="{layer}" data-i="{i + 1}" data-j="{card.j + 1}">',
                    _element("line", x1=x1, y1=y1, x2=x2, y2=y2, stroke=sign_colour(g),
                             stroke_width=edge_width(g, largest), stroke_opacity="0.75"),
                    "</g>",
                ]
    return parts


def _titles(picture: Picture, place: Layout) -> list[str]:
    last, parts = len(picture.sizes), []
    for layer, n in enumerate(picture.sizes, start=1):
        index, x = layer - 1, place.centre(layer - 1)
        parts += [
            _element("rect", class_="column", data_layer=layer, x=place.lefts[index] - 5, y=4,
                     width=place.card_width(index) + 10, height=place.bottom + 4, rx=8,
                     fill="none"),
            _element("text", f"layer {layer}", class_="title", x=x, y=20, text_anchor="middle"),
            _element("text", _subtitle(layer, n, last), class_="name", x=x, y=38,
                     text_anchor="middle"),
        ]
    return parts


# ------------------------------------------------------------------------------ the legend


def _when(condition: str, markup: str) -> str:
    """A clause the page shows only once its number is known (data-when = its quantity)."""
    return f'<tspan data-when="{condition}">{markup}</tspan>'


def _words(text: str) -> list[tuple[str, float]]:
    """Plain text as (markup, width) pieces, one per word with its trailing space."""
    words = text.split(" ")
    return [(escape(word) + (" " if k < len(words) - 1 else ""),
             text_width(word + (" " if k < len(words) - 1 else "")))
            for k, word in enumerate(words) if word]


def _wrap(pieces: list[tuple[str, float]], width: float) -> list[str]:
    """Pieces (markup, width) filled into lines at most `width` px wide."""
    lines, line, used = [], "", 0.0
    for markup, piece in pieces:
        if line and used + piece > width:
            lines.append(line.rstrip())
            line, used = "", 0.0
        line, used = line + markup, used + piece
    return [*lines, line.rstrip()] if line else lines


def _legend_paragraphs(picture: Picture, digits: int) -> list[list[tuple[str, float]]]:
    """The legend as paragraphs of (markup, width) pieces; numbers are atomic pieces."""
    inputs = ", ".join(format_data(float(v), digits) for v in picture.activations[0])
    targets = ", ".join(format_data(float(v), digits) for v in picture.target)
    targets = targets if len(picture.target) == 1 else f"({targets})"
    loss, room = format_number(picture.loss, digits), _widest_number(digits)
    largest_delta = format_number(_largest(picture.deltas), digits)
    largest_grad = format_number(_largest(picture.grad_weights), digits)
    example = [
        *_words("example "), (_value("example", str(picture.example + 1)) + " ", 3 * FONT),
        *_words(f"of N = {picture.n_examples}: x = "),
        (f"({_value('inputs', inputs)}), ", text_width(f"({inputs}), ")),
        *_words("y = "), (_value("targets", targets), text_width(targets)),
        (_when("loss", f"; loss L = {_value('loss', loss)}"), text_width("; loss L = ") + room),
    ]
    strengths = [
        *_words("A unit’s colour is stronger for larger |δ|"),
        (_when("largest_delta", f" (largest shown {_value('largest_delta', largest_delta)})"),
         text_width(" (largest shown )") + room),
        *_words("; an edge is wider for larger |∂L/∂W|"),
        (_when("largest_grad", f" (largest shown {_value('largest_grad', largest_grad)})"),
         text_width(" (largest shown )") + room),
        (".", text_width(".")),
    ]
    return [
        example,
        _words("Blue > 0, red < 0: the sign of δ on a unit, of ∂L/∂W on an edge."),
        strengths,
        _words("a = σ(z), also the bar beside a unit (from 0 to 1); δ = ∂L/∂z of the mean loss "
               "L; ∂L/∂W and ∂L/∂b are summed over the N examples; → is the value after the "
               "update θ ← θ − η ∂L/∂θ."),
        _words(_index_example(picture.sizes)),
    ]


def _index_example(sizes: tuple[int, ...]) -> str:
    """How W's indices read, on the picture's own layer 2: W₂[i,j] is the textbook's w²ⱼᵢ."""
    i, j = sizes[0], 1
    return (f"W₂[{i},{j}] joins unit {i} of layer 1 to unit {j} of layer 2: row form "
            f"z₂ = a₁ W₂ + b₂ (a₁ = x); the textbook writes it w²{subscript(j)}{subscript(i)}, "
            f"in column form z² = w² a¹ + b².")


def _legend(picture: Picture, place: Layout, digits: int) -> tuple[list[str], float]:
    """The legend's lines under the cards, and the picture's height."""
    x, y, swatch = MARGIN, place.bottom + 12, 2 * RADIUS + 6
    parts, available = [], place.width - 2 * MARGIN
    for number, paragraph in enumerate(_legend_paragraphs(picture, digits)):
        indent = swatch if number == 1 else 0.0  # the colour line starts with two discs
        if number == 1:
            centre = y + LINE / 2
            parts += [_element("circle", cx=x + 6.0, cy=centre, r=6, fill=POSITIVE),
                      _element("circle", cx=x + 22.0, cy=centre, r=6, fill=NEGATIVE)]
        for line in _wrap(paragraph, available - indent):
            parts.append(_element("text", line, x=x + indent, y=_baseline(y)))
            y += LINE
        y += 2
    return parts, y + 6


def format_svg(picture: Picture, digits: int = DEFAULT_DIGITS) -> str:
    """A standalone SVG document of the picture; numbers to `digits` significant digits."""
    columns = cards(picture, digits)
    place = layout(columns)
    largest_delta = _largest(picture.deltas)
    edges = _draw_edges(picture, place, columns, _largest(picture.grad_weights))
    units = [part for column in columns for card in column
             for part in _draw_card(picture, place, card, largest_delta)]
    legend, height = _legend(picture, place, digits)
    title = escape(f"The network {'-'.join(map(str, picture.sizes))}: every z, a, δ, w and ∂L/∂w")
    width = round(place.width)
    header = (f'<svg xmlns="http://www.w3.org/2000/svg" class="dp-network" width="{width}" '
              f'height="{round(height)}" viewBox="0 0 {width} {round(height)}" role="img" aria-label="{title}" '
              f'data-font="{FONT}">')
    return "\n".join([
        header,
        f"<title>{title}</title>",
        f"<style>{STYLE}</style>",
        _element("rect", width=width, height=round(height), fill="#fff"),
        *_titles(picture, place), *edges, *units, *legend,
        "</svg>",
        "",
    ])
