"""Tests for deltaprop.teaching.svg: the picture shows the record's own numbers, scaled honestly."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import WORKED_LEARNING_RATE

from deltaprop.teaching import svg
from deltaprop.teaching.arithmetic import format_number
from deltaprop.teaching.history import training_history

NAMESPACE = {"svg": "http://www.w3.org/2000/svg"}


def parse(text: str) -> ET.Element:
    return ET.fromstring(text)  # also: the document is well-formed XML


def values(root: ET.Element) -> dict[tuple, str]:
    """{(quantity, layer, i, j): text} of every addressed number."""
    found = {}
    for tspan in root.iterfind(".//svg:tspan", NAMESPACE):
        key = tuple(tspan.get(f"data-{name}") for name in ("q", "layer", "i", "j"))
        found[key] = tspan.text or ""
    return found


def test_every_number_is_the_records(example):
    root = parse(svg.format_svg(svg.picture_of_example(example, n=1)))
    shown = values(root)
    for record in example.layers:
        layer = str(record.layer)
        for j in range(record.weights.shape[1]):
            unit = (layer, None, str(j + 1))
            assert shown[("z", *unit)] == format_number(record.pre_activation[1, j])
            assert shown[("a", *unit)] == format_number(record.activation[1, j])
            assert shown[("delta", *unit)] == format_number(record.delta[1, j])
            assert shown[("b", *unit)] == format_number(record.biases[j])
            assert shown[("grad_b", *unit)] == format_number(record.grad_biases[j])
            assert shown[("b_after", *unit)] == f"→ {format_number(record.new_biases[j])}"
            for i in range(record.weights.shape[0]):
                edge = (layer, str(i + 1), str(j + 1))
                assert shown[("w", *edge)] == format_number(record.weights[i, j])
                assert shown[("grad_w", *edge)] == format_number(record.grad_weights[i, j])
                assert shown[("w_after", *edge)] == f"→ {format_number(record.new_weights[i, j])}"
    for j in range(2):
        assert shown[("x", "1", None, str(j + 1))] == format_number(example.x[1, j])
    assert shown[("y", "5", None, "1")] == "0"  # the second target, a whole number as it is
    assert shown[("example", None, None, None)] == "2"
    assert shown[("loss", None, None, None)] == format_number(example.loss_before)


def test_units_edges_and_layers_are_all_drawn_and_numbered(example):
    root = parse(svg.format_svg(svg.picture_of_example(example)))
    units = root.findall(".//svg:g[@class='unit']", NAMESPACE)
    edges = root.findall(".//svg:g[@class='edge']", NAMESPACE)
    assert len(units) == sum(example.sizes) == 12
    assert len(edges) == 2 * 3 + 3 * 3 + 3 * 3 + 3 * 1
    titles = [t.text for t in root.iterfind(".//svg:text[@class='title']", NAMESPACE)]
    assert titles == ["layer 1", "layer 2", "layer 3", "layer 4", "layer 5"]
    names = {t.text for t in root.iterfind(".//svg:*[@class='name']", NAMESPACE)}
    assert {"x[1]", "x[2]", "z₂[3]", "a₂[3]", "δ₅[1]", "W₃[2,1]", "∂L/∂W", "b₄[3]", "∂L/∂b",
            "y[1]", "input · n₁ = 2", "n₄ = 3", "output · n₅ = 1"} <= names
    # Unit j of layer l lists the weights into it, W_l[1,j] .. W_l[n,j], top to bottom, and the
    # edge from unit i ends at the left end of its W_l[i,j] line.
    for edge in root.iterfind(".//svg:g[@class='edge']", NAMESPACE):
        layer, i, j = (edge.get(f"data-{key}") for key in ("layer", "i", "j"))
        unit = root.find(f".//svg:g[@class='unit'][@data-layer='{layer}'][@data-j='{j}']", NAMESPACE)
        line = edge.find("svg:line", NAMESPACE)
        label = next(text for text in unit.iterfind("svg:text", NAMESPACE)
                     if text.find("svg:tspan", NAMESPACE).text == f"W{svg.subscript(int(layer))}[{i},{j}]")
        assert float(label.get("x")) - float(line.get("x2")) == pytest.approx(svg.PAD_X + 1)
        assert float(label.get("y")) - float(line.get("y2")) == pytest.approx(0.35 * svg.FONT)


def test_colour_and_width_follow_sign_and_size(example):
    root = parse(svg.format_svg(svg.picture_of_example(example)))
    widths, grads = [], []
    for edge in root.iterfind(".//svg:g[@class='edge']", NAMESPACE):
        record = example.layer(int(edge.get("data-layer")))
        g = record.grad_weights[int(edge.get("data-i")) - 1, int(edge.get("data-j")) - 1]
        line = edge.find("svg:line", NAMESPACE)
        assert line.get("stroke") == (svg.POSITIVE if g > 0 else svg.NEGATIVE)
        widths.append(float(line.get("stroke-width")))
        grads.append(abs(g))
    order = np.argsort(grads)
    assert np.all(np.diff(np.asarray(widths)[order]) >= -0.011)  # wider for larger |∂L/∂w|
    assert max(widths) == pytest.approx(svg.MAX_WIDTH)
    largest_delta = max(float(np.max(np.abs(r.delta[0]))) for r in example.layers)
    for unit in root.iterfind(".//svg:g[@class='unit']", NAMESPACE):
        layer, j = int(unit.get("data-layer")), int(unit.get("data-j")) - 1
        circle = unit.find("svg:circle[@class='unit-fill']", NAMESPACE)
        bar = unit.find("svg:rect[@class='bar']", NAMESPACE)
        a = example.x[0, j] if layer == 1 else example.layer(layer).activation[0, j]
        if layer > 1:
            delta = example.layer(layer).delta[0, j]
            assert circle.get("fill") == (svg.POSITIVE if delta > 0 else svg.NEGATIVE)
            expected = svg.MIN_OPACITY + (1 - svg.MIN_OPACITY) * abs(delta) / largest_delta
            assert float(circle.get("fill-opacity")) == pytest.approx(expected, abs=1e-3)
            assert float(bar.get("height")) == pytest.approx(2 * svg.RADIUS * a, abs=0.01)
    assert svg.strength(0.0, 0.0) == svg.MIN_OPACITY and svg.edge_width(1.0, 0.0) == svg.MIN_WIDTH
    assert svg.sign_colour(0.0) == svg.NEUTRAL


def test_digits_and_the_training_step_picture(batch, example):
    text = svg.format_svg(svg.picture_of_example(example), digits=6)
    assert values(parse(text))[("delta", "3", None, "2")] == format_number(
        example.layer(3).delta[0, 1], 6)
    history = training_history(*batch, learning_rate=WORKED_LEARNING_RATE, steps=2)
    assert svg.format_svg(svg.picture_at_step(history, 0)) == svg.format_svg(
        svg.picture_of_example(example))
    later = values(parse(svg.format_svg(svg.picture_at_step(history, 1))))
    assert later[("w", "2", "1", "1")] == format_number(example.layer(2).new_weights[0, 0])


def test_layout_centres_every_layer_and_keeps_labels_apart(example):
    picture = svg.picture_of_example(example)
    columns = svg.cards(picture)
    place = svg.layout(columns)
    assert [len(column) for column in columns] == list(example.sizes)
    middles = [place.tops[k][0] + (place.tops[k][-1] + columns[k][-1].height - place.tops[k][0]) / 2
               for k in range(len(columns))]
    assert np.allclose(middles, middles[0])  # every column centred on the tallest
    for k, column in enumerate(columns):
        for above, below, top in zip(column, column[1:], place.tops[k][1:]):
            assert top - place.tops[k][column.index(above)] == above.height + svg.CARD_GAP
        for card in column:  # the text of a card ends before its a-bar and its circle
            assert max(line.width for line in card.lines) <= place.text_widths[k]
            assert len({card.line_top(n) for n in range(len(card.lines))}) == len(card.lines)
    gaps = [place.lefts[k + 1] - place.lefts[k] - place.card_width(k) for k in range(4)]
    assert min(gaps) >= svg.FAN - 1e-9  # the edges' room between the columns
    assert place.width / svg.FONT <= svg.READABLE_WIDTH_IN_EM  # ≥ 9 px when shown 830 px wide


def test_the_widest_number_has_room():
    """Every number format_number writes from 1e-99 to 1e99 fits the room reserved for it."""
    room = svg._widest_number(4)
    for value in (-1.234e-05, -123.4, -1.0e99, -9.999e-99, 0.0, -0.001234, 12345.0):
        assert svg.text_width(format_number(value, 4)) <= room
    assert svg.text_width(format_number(-1e300, 4)) > room  # beyond: room for what is drawn
    assert svg.text_width("W") > svg.text_width("i")  # proportional, not a fixed pitch
    assert svg.subscript(12) == "₁₂" and svg.superscript(3) == "³"


def test_the_legend_uses_plain_symbols(example):
    text = svg.format_svg(svg.picture_of_example(example))
    legend = text[text.index('<circle cx="14.00"'):]  # after the first swatch of the legend
    for tex in ("^", "_{", "\\", "w^l"):
        assert tex not in legend, tex
    assert "the textbook writes it w²₁₂" in text  # W₂[2,1] is the textbook's w²₁₂
