"""Tests for deltaprop.teaching.page: backprop.html is self-contained, carries the run's numbers, and
shows them in a real browser.

The browser tests drive Debian's headless Chromium through the Chrome DevTools protocol over a
pipe (--remote-debugging-pipe: no port, no Python browser library): they load the page written by
experiments/worked_example.py, click its buttons with real mouse events, press keys, move the
slider, and compare every number the page shows with the history computed here. They fail, not
skip, when chromium is missing: CI installs it (.ci/run).
"""

import json
import re
import time

import numpy as np
import pytest
from browser import Chromium
from conftest import ROOT, compose_config, run_in_process

from deltaprop.cli.teaching import worked_example_inputs
from deltaprop.teaching import svg
from deltaprop.teaching.arithmetic import format_data, format_number
from deltaprop.teaching.history import training_history
from deltaprop.teaching.page import CONTENT_SECURITY_POLICY, format_page, page_data

STEPS = 6


@pytest.fixture(scope="module")
def inputs():
    """The by-hand network on the whole XOR table: N = 4, so the page has examples to switch."""
    cfg = compose_config("experiment=worked_example_by_hand", config_name="worked_example")
    params, x, y = worked_example_inputs(cfg, 4)
    return params, x, y, float(cfg.optimizer.lr)


@pytest.fixture(scope="module")
def history(inputs):
    params, x, y, learning_rate = inputs
    return training_history(params, x, y, learning_rate, STEPS)


def embedded_json(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="deltaprop-data">(.*?)</script>',
                      page, flags=re.DOTALL)
    return json.loads(match.group(1).replace("<\\/", "</"))


def test_the_page_is_one_self_contained_file(history):
    page = format_page(history, source="the XOR truth table")
    assert f'content="{CONTENT_SECURITY_POLICY}"' in page
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY  # the browser may fetch nothing
    for loads_something in ("src=", "<link", "@import", "url(", "fetch(", "XMLHttpRequest",
                            "href=\"http", "import("):
        assert loads_something not in page, loads_something
    assert page.count("<script") == 2  # the data and the script, both inline
    assert svg.format_svg(svg.picture_at_step(history, 0)) in page


def test_the_embedded_numbers_are_the_histories_bit_for_bit(history):
    data = embedded_json(format_page(history, digits=5))
    assert data == json.loads(json.dumps(page_data(history, 5)))
    assert data["digits"] == 5 and data["steps"] == STEPS and data["n_examples"] == 4
    for index, layer in enumerate(data["layers"]):
        assert layer["layer"] == index + 2
        np.testing.assert_array_equal(np.array(layer["delta"]), history.deltas[index])
        np.testing.assert_array_equal(np.array(layer["W"]), history.weights[index])
        np.testing.assert_array_equal(np.array(layer["grad_W"]), history.grad_weights[index])
    np.testing.assert_array_equal(data["losses"], history.losses)
    assert max(data["errors"]) < 1e-12


def test_a_non_finite_number_is_refused(history):
    broken = history.__class__(**{**history.__dict__, "losses": history.losses * np.nan})
    with pytest.raises(ValueError):
        format_page(broken)


# ------------------------------------------------------------------------------------ the browser


@pytest.fixture(scope="module")
def written_page(tmp_path_factory):
    """backprop.html as `deltaprop-worked-example` writes it (N = 4, 6 steps)."""
    run_dir = tmp_path_factory.mktemp("page")
    result = run_in_process(
        "worked_example", f"hydra.run.dir={run_dir}", "logger=none", "worked_example.mode=by_hand",
        "worked_example.batch=4", "worked_example.page=true",
        f"worked_example.page_steps={STEPS}", cwd=run_dir)
    assert result.returncode == 0, result.stderr
    assert f"page: {run_dir / 'backprop.html'}" in result.stdout
    return run_dir / "backprop.html"


@pytest.fixture(scope="module")
def browser():
    chromium = Chromium()
    yield chromium
    chromium.close()


def expected(history, state: dict, key: tuple, digits: int = 4) -> str:
    """What the page must show for one number in a state: the history's value, or nothing yet."""
    quantity, layer, i, j = key
    step, phase, at, n = state["step"], state["phase"], state.get("layer"), state["example"] - 1
    layer = int(layer) if layer else None  # textbook numbering, 1..L
    i, j = (int(v) - 1 if v else None for v in (i, j))  # 0-based array indices
    known = phase == "update" or (phase == "backward" and layer is not None and layer >= at)
    computed = phase != "forward" or (layer or 0) <= at
    shown = {
        "z": computed, "a": computed, "delta": known, "grad_w": known,
        "grad_b": known, "w_after": phase == "update", "b_after": phase == "update",
        "loss": phase != "forward" or at == len(history.sizes),
        "largest_delta": phase != "forward", "largest_grad": phase != "forward",
    }.get(quantity, True)
    if not shown:
        return ""
    index = None if layer is None else layer - 2
    # the scales of colour and width: the largest |δ| and |∂L/∂W| of the layers shown so far
    shown_layers = [k for k in range(len(history.deltas))
                    if phase == "update" or (phase == "backward" and k + 2 >= at)]
    value = {
        "z": lambda: history.pre_activations[index][step, n, j],
        "a": lambda: history.activations[index][step, n, j],
        "delta": lambda: history.deltas[index][step, n, j],
        "w": lambda: history.weights[index][step, i, j],
        "w_after": lambda: history.weights[index][step + 1, i, j],
        "grad_w": lambda: history.grad_weights[index][step, i, j],
        "b": lambda: history.biases[index][step, j],
        "b_after": lambda: history.biases[index][step + 1, j],
        "grad_b": lambda: history.grad_biases[index][step, j],
        "loss": lambda: history.losses[step],
        "largest_delta": lambda: max(np.max(np.abs(history.deltas[k][step, n]))
                                     for k in shown_layers),
        "largest_grad": lambda: max(np.max(np.abs(history.grad_weights[k][step]))
                                    for k in shown_layers),
    }
    data = {
        "x": lambda: format_data(history.x[n, j]), "y": lambda: format_data(history.y[n, j]),
        "inputs": lambda: ", ".join(format_data(v) for v in history.x[n]),
        "targets": lambda: format_data(history.y[n, 0]), "example": lambda: str(n + 1),
    }
    if quantity in data:
        return data[quantity]()
    text = format_number(value[quantity](), digits)
    return f"→ {text}" if quantity.endswith("_after") else text


def assert_page_shows(browser, history, state: dict) -> None:
    shown = browser.shown()
    assert len(shown) > 60
    wrong = {key: (text, expected(history, state, key))
             for key, text in shown.items() if text != expected(history, state, key)}
    assert not wrong, list(wrong.items())[:5]
    for key, text in shown.items():  # and, read back as numbers, within half a last digit
        if text.strip(" →") and key[0] not in ("example", "inputs", "targets", "x", "y"):
            assert float(text.strip(" →")) == pytest.approx(
                float(expected(history, state, key).strip(" →")), rel=6e-4, abs=1e-300)


STATES = [
    {"step": 0, "phase": "forward", "layer": 3, "example": 1},
    {"step": 3, "phase": "backward", "layer": 4, "example": 2},
    {"step": STEPS - 1, "phase": "update", "example": 4},
]


@pytest.mark.slow
def test_the_page_shows_the_runs_numbers_in_every_state(browser, written_page, history):
    for state in STATES:
        fragment = f"#step={state['step']}&phase={state['phase']}"
        fragment += f"&layer={state['layer']}" if "layer" in state else ""
        browser.open(written_page.as_uri() + fragment + f"&example={state['example']}")
        assert browser.state() == fragment + f"&example={state['example']}"
        assert_page_shows(browser, history, state)
    forward = {"step": 0, "phase": "forward", "layer": 3, "example": 1}
    browser.open(written_page.as_uri() + "#step=0&phase=forward&layer=3")
    shown = browser.shown()
    assert shown[("a", "3", None, "1")] and not shown[("a", "4", None, "1")]
    assert not any(text for (q, *_), text in shown.items() if q in ("delta", "grad_w"))
    assert_page_shows(browser, history, forward)
    requests = [e["params"]["request"]["url"] for e in browser.events
                if e.get("method") == "Network.requestWillBeSent"]
    assert requests and all(url.startswith("file://") for url in requests), requests


@pytest.mark.slow
def test_the_page_opens_at_the_forward_pass_and_shows_no_number_before_its_phase(
        browser, written_page, history):
    browser.open(written_page.as_uri())
    assert browser.state() == "#step=0&phase=forward&layer=2&example=1"
    shown = browser.shown()
    assert shown[("a", "2", None, "1")] and shown[("z", "2", None, "1")]
    assert not shown[("a", "3", None, "1")] and not shown[("loss", None, None, None)]
    hidden = browser.evaluate("JSON.stringify([...document.querySelectorAll('[data-when]')]"
                              ".map(e => [e.dataset.when, getComputedStyle(e).display]))")
    assert {when for when, display in json.loads(hidden) if display == "none"} == {
        "loss", "largest_delta", "largest_grad"}  # no "loss L = " without its number
    status = browser.evaluate("document.getElementById('status').textContent")
    assert not re.search(r"\d\.\d", status), status  # no loss, no check error yet
    assert browser.evaluate("document.getElementById('previous').disabled")
    assert not browser.evaluate("document.getElementById('next').disabled")


@pytest.mark.slow
def test_the_update_phase_shows_the_whole_picture(browser, written_page, history):
    """At the update every number is known: the page shows what network.svg shows."""
    picture = svg.format_svg(svg.picture_at_step(history, 0))
    written = (written_page.parent / "network.svg").read_text(encoding="utf-8")
    assert picture == written  # the run's network.svg is the page's step 0
    browser.open(written_page.as_uri() + "#step=0&phase=update")
    static = dict(re.findall(r'(<tspan data-q="[^"]*"[^>]*>)([^<]*)</tspan>', picture))
    shown = browser.evaluate(
        "JSON.stringify([...document.querySelectorAll('#network tspan[data-q]')]"
        ".map(e => e.textContent))")
    assert json.loads(shown) == list(static.values())
    status = browser.evaluate("document.getElementById('status').textContent")
    assert format_number(history.losses[1]) in status and "relative error" in status


@pytest.mark.slow
def test_the_controls_step_through_one_update_and_on(browser, written_page, history):
    browser.open(written_page.as_uri() + "#step=0&phase=backward&layer=2&example=1")
    browser.click("#next")  # a real click: the update follows the backward pass through layer 2
    browser.wait_for("document.body.dataset.state === '#step=0&phase=update&example=1'")
    browser.key("ArrowRight")  # after the update: step 1, the forward pass starts again
    browser.wait_for("document.body.dataset.state === '#step=1&phase=forward&layer=2&example=1'")
    assert_page_shows(browser, history, {"step": 1, "phase": "forward", "layer": 2, "example": 1})
    browser.click("#previous")
    browser.wait_for("document.body.dataset.state === '#step=0&phase=update&example=1'")
    browser.evaluate("(() => { const s = document.getElementById('step'); s.value = '4';"
                     "s.dispatchEvent(new Event('input')); })()")
    browser.wait_for("document.body.dataset.state === '#step=4&phase=update&example=1'")
    browser.evaluate("(() => { const e = document.getElementById('example'); e.value = '3';"
                     "e.dispatchEvent(new Event('change')); })()")
    browser.wait_for("document.body.dataset.state === '#step=4&phase=update&example=3'")
    assert_page_shows(browser, history, {"step": 4, "phase": "update", "example": 3})
    browser.click("#phases a[data-phase='backward'][data-layer='4']")
    browser.wait_for("document.body.dataset.state === '#step=4&phase=backward&layer=4&example=3'")
    code = browser.evaluate("document.getElementById('equation-code').innerHTML")
    assert code.startswith("δ<sub>4</sub> = (δ<sub>5</sub> W<sub>5</sub>ᵀ) ⊙ a<sub>4</sub>")
    textbook = browser.evaluate("document.getElementById('equation-textbook').innerHTML")
    assert "(BP2)" in textbook and "∂C<sub>x</sub>/∂w<sup>4</sup><sub>ji</sub>" in textbook
    for end, button in (("#step=0&phase=forward&layer=2", "#previous"),
                        (f"#step={STEPS - 1}&phase=update", "#next")):
        browser.open(written_page.as_uri() + end)
        assert browser.evaluate(f"document.querySelector('{button}').disabled")
        browser.click(button)  # disabled: nothing before the first phase or after the last
        browser.key("ArrowLeft" if button == "#previous" else "ArrowRight")
        time.sleep(0.2)
        assert browser.state() == end + "&example=1"
    browser.open(written_page.as_uri() + "#step=99&phase=nonsense&layer=-3&example=9")
    assert browser.state() == f"#step={STEPS - 1}&phase=forward&layer=2&example=4"  # clamped


@pytest.mark.slow
def test_units_keep_their_colour_on_the_highlighted_column(browser, written_page):
    """The highlighted column shows through no unit: an opaque disc lies under each."""
    browser.open(written_page.as_uri() + "#step=0&phase=backward&layer=4")
    colours = browser.evaluate(
        "JSON.stringify([...document.querySelectorAll('g.unit[data-layer=\"4\"]')].map(u => "
        "[...u.querySelectorAll('circle')].map(c => [c.getAttribute('class'), "
        "getComputedStyle(c).fill])))")
    for backing, fill in json.loads(colours):
        assert backing == ["backing", "rgb(255, 255, 255)"] and fill[0] == "unit-fill"
    assert browser.evaluate("document.querySelector('rect.column[data-layer=\"4\"]')"
                            ".classList.contains('current')")


# ---------------------------------------------------------------- text that can be read, apart

README_WIDTH = 830  # px: GitHub shows a README's pictures about this wide
SMALLEST_FONT = 9  # px
LAYOUT_NETWORKS = {  # name: the worked example's config overrides, its batch
    "calculator [2,2,2,2,1]": (("experiment=worked_example_by_hand",), 1),
    "textbook [2,3,3,3,1]": (("experiment=worked_example",), 4),
    "[2,4,4,1]": (("experiment=worked_example", "model.hidden=[4,4]"), 4),
}
# Every visible text box of the first svg under `root` in screen px, and what touches it: other
# text boxes, units and bars (circles and rects of a unit), edges (a segment as wide as its
# stroke); and the font size of each text as rendered (its font size times the picture's scale).
MEASURE = r"""(root => {
  const picture = root.querySelector("svg");
  const scale = picture.getBoundingClientRect().width / picture.viewBox.baseVal.width;
  const box = (element) => { const r = element.getBoundingClientRect();
    return {x0: r.left, y0: r.top, x1: r.right, y1: r.bottom, text: element.textContent}; };
  const texts = [...picture.querySelectorAll("text")].filter((t) => t.textContent.trim() &&
    t.getBoundingClientRect().width > 0);
  const boxes = texts.map(box);
  const apart = (a, b) => Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0) <= 0.01 ||
    Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0) <= 0.01;
  const overlaps = [];
  boxes.forEach((a, k) => boxes.slice(k + 1).forEach((b) => {
    if (!apart(a, b)) overlaps.push([a.text, b.text]); }));
  const shapes = [...picture.querySelectorAll("circle, g.unit rect:not(.card)")].map(box);
  shapes.forEach((shape) => boxes.forEach((b) => {
    if (!apart(shape, b)) overlaps.push(["a unit or its bar", b.text]); }));
  function hits(p, q, b) {  // does the segment p-q enter box b? (Liang-Barsky)
    let t0 = 0, t1 = 1; const dx = q.x - p.x, dy = q.y - p.y;
    for (const [pk, qk] of [[-dx, p.x - b.x0], [dx, b.x1 - p.x], [-dy, p.y - b.y0], [dy, b.y1 - p.y]]) {
      if (pk === 0) { if (qk < 0) return false; continue; }
      const r = qk / pk;
      if (pk < 0) { if (r > t1) return false; t0 = Math.max(t0, r); }
      else { if (r < t0) return false; t1 = Math.min(t1, r); }
    }
    return true;
  }
  const matrix = picture.getScreenCTM(), crossings = [];
  picture.querySelectorAll("g.edge line").forEach((line) => {
    const at = (x, y) => new DOMPoint(parseFloat(line.getAttribute(x)),
      parseFloat(line.getAttribute(y))).matrixTransform(matrix);
    const half = parseFloat(line.getAttribute("stroke-width")) * scale / 2;
    boxes.forEach((b) => {
      const wide = {x0: b.x0 - half, y0: b.y0 - half, x1: b.x1 + half, y1: b.y1 + half};
      if (hits(at("x1", "y1"), at("x2", "y2"), wide)) crossings.push(b.text); });
  });
  const fonts = texts.map((t) => parseFloat(getComputedStyle(t).fontSize) * scale);
  return JSON.stringify({overlaps, crossings, texts: texts.length, smallest: Math.min(...fonts),
                         width: picture.getBoundingClientRect().width});
})"""


def measure(browser, root: str = "document.getElementById('network')") -> dict:
    return json.loads(browser.evaluate(f"{MEASURE}({root})"))


def window(browser, width: int) -> None:
    """A browser window `width` px wide, all of it for the page (no scroll bar)."""
    browser.send("Emulation.setScrollbarsHidden", {"hidden": True})
    browser.send("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False})


@pytest.mark.slow
def test_the_measure_sees_overlaps_crossings_and_small_text(browser, tmp_path):
    """The measure of the layout tests finds what they must not have."""
    picture = ('<svg xmlns="http://www.w3.org/2000/svg" width="1660" height="200" '
               'viewBox="0 0 1660 200"><text x="10" y="50" font-size="13">W₂[1,1] 0.5</text>'
               '<text x="40" y="55" font-size="13">∂L/∂W 0.1</text>'
               '<g class="edge"><line x1="0" y1="100" x2="300" y2="100" stroke-width="4"/></g>'
               '<text x="100" y="104" font-size="13">crossed</text></svg>')
    page = tmp_path / "bad.html"
    page.write_text(f'<!doctype html><meta charset="utf-8"><style>svg{{max-width:100%}}</style>'
                    f'<body data-state="bad"><div id="at" '
                    f'style="width:{README_WIDTH}px">{picture}</div></body>', encoding="utf-8")
    browser.open(page.as_uri())
    measured = measure(browser, "document.getElementById('at')")
    assert measured["overlaps"] == [["W₂[1,1] 0.5", "∂L/∂W 0.1"]]
    assert measured["crossings"] == ["crossed"]
    assert measured["smallest"] == pytest.approx(13 * README_WIDTH / 1660)  # 6.5 px


@pytest.fixture(scope="module", params=list(LAYOUT_NETWORKS))
def network_page(request, tmp_path_factory):
    """The page of one of the three networks (two steps) and its history."""
    overrides, batch = LAYOUT_NETWORKS[request.param]
    cfg = compose_config(*overrides, config_name="worked_example")
    params, x, y = worked_example_inputs(cfg, batch)
    history = training_history(params, x, y, float(cfg.optimizer.lr), 2)
    path = tmp_path_factory.mktemp("layout") / "backprop.html"
    path.write_text(format_page(history), encoding="utf-8")
    return request.param, path, history


def every_phase(history):
    last = len(history.sizes)
    for step in range(history.steps):
        yield from (f"#step={step}&phase=forward&layer={layer}" for layer in range(2, last + 1))
        yield from (f"#step={step}&phase=backward&layer={layer}" for layer in range(last, 1, -1))
        yield f"#step={step}&phase=update"


@pytest.mark.slow
def test_no_label_overlaps_or_is_crossed_in_any_phase_at_readme_width(browser, network_page):
    """Shown 830 px wide, in every phase of two steps: no two text boxes overlap, no unit covers
    a label, no edge runs through one, and no text is under 9 px."""
    name, path, history = network_page
    browser.open(path.as_uri())
    window(browser, README_WIDTH + 48)  # the page's margins are 24 px each side
    example = "&example=1" if history.x.shape[0] > 1 else ""
    results = []
    for fragment in every_phase(history):
        browser.evaluate(f"location.hash = '{fragment}'")
        browser.wait_for(f"document.body.dataset.state === '{fragment}{example}'")
        measured = measure(browser)
        assert measured["width"] == pytest.approx(README_WIDTH, abs=0.5)
        assert measured["texts"] > 10 * len(history.sizes)
        assert not measured["overlaps"], (fragment, measured["overlaps"][:5])
        assert not measured["crossings"], (fragment, measured["crossings"][:5])
        assert measured["smallest"] >= SMALLEST_FONT, (fragment, measured["smallest"])
        results.append(measured)
    print(f"\n{name}: {len(results)} phases at {README_WIDTH} px, overlaps "
          f"{sum(len(m['overlaps']) + len(m['crossings']) for m in results)}, smallest text "
          f"{min(m['smallest'] for m in results):.2f} px")


@pytest.mark.slow
def test_a_narrow_window_keeps_the_network_text_readable(browser, network_page):
    """At 900 px the picture fits and its text stays ≥ 9 px; narrower, it scrolls instead of
    shrinking its text."""
    _, path, _ = network_page
    browser.open(path.as_uri() + "#step=0&phase=update")
    for width in (900, 600):
        window(browser, width)
        measured = measure(browser)
        assert measured["smallest"] >= SMALLEST_FONT, (width, measured["smallest"])
        assert not measured["overlaps"] and not measured["crossings"]
    assert browser.evaluate("(() => { const n = document.getElementById('network');"
                            "return n.scrollWidth > n.clientWidth; })()")  # it scrolls at 600


@pytest.mark.slow
def test_the_pictures_in_the_docs_are_readable_at_readme_width(browser, tmp_path):
    """docs/network.svg as a README shows it, shrunk to 830 px: every label apart, ≥ 9 px."""
    picture = (ROOT / "docs" / "network.svg").read_text(encoding="utf-8")
    page = tmp_path / "readme.html"
    page.write_text(f'<!doctype html><meta charset="utf-8"><style>body{{margin:0}}'
                    f'svg{{max-width:100%;height:auto}}</style><body data-state="readme">'
                    f'<div id="readme" style="width:{README_WIDTH}px">{picture}</div></body>',
                    encoding="utf-8")
    browser.open(page.as_uri())
    measured = measure(browser, "document.getElementById('readme')")
    assert measured["width"] == pytest.approx(README_WIDTH, abs=0.5)
    assert not measured["overlaps"] and not measured["crossings"], measured
    assert measured["smallest"] >= SMALLEST_FONT
    print(f"\ndocs/network.svg at {README_WIDTH} px: {measured['texts']} labels, overlaps 0, "
          f"smallest text {measured['smallest']:.2f} px")


# The smallest text of the whole page as rendered, in px: HTML text at its font size, SVG text at
# its font size times its picture's scale; hidden text (no box) does not count.
SMALLEST_TEXT = r"""(() => {
  let smallest = Infinity;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const element = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || element.closest("script, style, title")) continue;
    if (!element.getBoundingClientRect().width) continue;
    let size = parseFloat(getComputedStyle(element).fontSize);
    const picture = element.closest("svg");
    if (picture && picture.viewBox.baseVal && picture.viewBox.baseVal.width)
      size *= picture.getBoundingClientRect().width / picture.viewBox.baseVal.width;
    smallest = Math.min(smallest, size);
  }
  return smallest;
})()"""


@pytest.mark.slow
def test_the_screenshot_in_the_docs_is_readable_at_readme_width(browser, written_page):
    """docs/backprop_page.png is taken as wide as its window; shown 830 px wide, the page's
    smallest text (network, charts, controls) is still ≥ 9 px."""
    png = (ROOT / "docs" / "backprop_page.png").read_bytes()
    width = int.from_bytes(png[16:20], "big")  # the PNG header's width
    assert f"--window-size={width}," in (ROOT / "docs" / "backprop.md").read_text(encoding="utf-8")
    browser.open(written_page.as_uri() + "#step=3&phase=backward&layer=3")
    window(browser, width)
    smallest = browser.evaluate(SMALLEST_TEXT)
    assert smallest * min(1.0, README_WIDTH / width) >= SMALLEST_FONT, (width, smallest)


def test_log_axes_are_labelled_with_numbers():
    """Powers of ten written as numbers, 0.1 and 0.001, never 1e-0.4; within a decade, the ends."""
    from deltaprop.teaching.page import _log_ticks

    assert [label for _, label in _log_ticks(-3.3, -0.4, room=15)] == ["0.001", "0.01", "0.1"]
    assert [label for _, label in _log_ticks(-5.2, 0.3, room=15)] == [
        "1e-05", "0.0001", "0.001", "0.01", "0.1", "1"]
    assert [label for _, label in _log_ticks(-2.9, -2.2, room=15)] == ["0.0013", "0.0063"]
    many = _log_ticks(-30, 0, room=15)  # 31 decades on a 84 px axis: every k-th
    assert len(many) <= 84 / 15 + 1 and many[0] == (-30, "1e-30")
    assert not any(re.search(r"e-?\d+\.\d", label) for _, label in many)
