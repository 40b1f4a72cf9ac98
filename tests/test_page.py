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
import subprocess
import sys
import time

import numpy as np
import pytest
from browser import Chromium
from conftest import ROOT, cli_env, compose_config

from deltaprop.cli.teaching import worked_example_inputs
from deltaprop.run.config import read
from deltaprop.teaching import svg
from deltaprop.teaching.arithmetic import format_data, format_number
from deltaprop.teaching.history import training_history
from deltaprop.teaching.page import CONTENT_SECURITY_POLICY, format_page, page_data

STEPS = 6


@pytest.fixture(scope="module")
def inputs():
    """The by-hand network on the whole XOR table: N = 4, so the page has examples to switch."""
    cfg = compose_config("experiment=worked_example_by_hand")
    params, x, y = worked_example_inputs(read(cfg), 4)
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
    """backprop.html as `python experiments/worked_example.py` writes it (N = 4, 6 steps)."""
    run_dir = tmp_path_factory.mktemp("page")
    result = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "worked_example.py"), f"hydra.run.dir={run_dir}",
         "logger=none", "worked_example.mode=by_hand", "worked_example.batch=4",
         "worked_example.page=true", f"worked_example.page_steps={STEPS}"],
        capture_output=True, text=True, timeout=300, cwd=run_dir, env=cli_env(), check=False,
    )
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
    shown = {
        "a": phase != "forward" or (layer or 0) <= at, "delta": known, "grad_w": known,
        "grad_b": known, "w_after": phase == "update", "b_after": phase == "update",
        "loss": phase != "forward" or at == len(history.sizes),
        "largest_delta": phase != "forward", "largest_grad": phase != "forward",
    }.get(quantity, True)
    if not shown:
        return ""
    index = None if layer is None else layer - 2
    value = {
        "a": lambda: history.activations[index][step, n, j],
        "delta": lambda: history.deltas[index][step, n, j],
        "w": lambda: history.weights[index][step, i, j],
        "w_after": lambda: history.weights[index][step + 1, i, j],
        "grad_w": lambda: history.grad_weights[index][step, i, j],
        "b": lambda: history.biases[index][step, j],
        "b_after": lambda: history.biases[index][step + 1, j],
        "grad_b": lambda: history.grad_biases[index][step, j],
        "loss": lambda: history.losses[step],
        "largest_delta": lambda: max(np.max(np.abs(d[step, n])) for d in history.deltas),
        "largest_grad": lambda: max(np.max(np.abs(g[step])) for g in history.grad_weights),
    }
    data = {
        "x": lambda: format_data(history.x[n, j]), "y": lambda: format_data(history.y[n, j]),
        "inputs": lambda: ", ".join(format_data(v) for v in history.x[n]),
        "targets": lambda: format_data(history.y[n, 0]), "example": lambda: str(n + 1),
    }
    if quantity in data:
        return data[quantity]()
    text = format_number(value[quantity](), digits)
    return f" → {text}" if quantity.endswith("_after") else text


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
def test_the_default_state_is_the_network_picture(browser, written_page, history):
    browser.open(written_page.as_uri())
    assert browser.state() == "#step=0&phase=backward&layer=2&example=1"
    picture = svg.format_svg(svg.picture_at_step(history, 0))
    static = dict(re.findall(r'(<tspan data-q="[^"]*"[^>]*>)([^<]*)</tspan>', picture))
    shown = browser.evaluate(
        "JSON.stringify([...document.querySelectorAll('#network tspan')].map(e => e.textContent))")
    assert json.loads(shown) == list(static.values())
    written = (written_page.parent / "network.svg").read_text(encoding="utf-8")
    assert picture == written  # the run's network.svg is the page's step 0


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
    assert browser.evaluate("document.getElementById('equation-code').textContent").startswith(
        "δ_4 = (δ_5 W_5ᵀ) ⊙ a_4(1 − a_4)")
    assert "(BP2)" in browser.evaluate("document.getElementById('equation-textbook').textContent")
    browser.open(written_page.as_uri() + "#step=0&phase=forward&layer=2")
    browser.click("#previous")  # nothing before the first phase of the first step
    time.sleep(0.2)
    assert browser.state() == "#step=0&phase=forward&layer=2&example=1"
    browser.open(written_page.as_uri() + "#step=99&phase=nonsense&layer=-3&example=9")
    assert browser.state() == f"#step={STEPS - 1}&phase=backward&layer=2&example=4"  # clamped
