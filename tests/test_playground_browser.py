"""The playground in headless Chromium: `deltaprop-playground --port 0` is started as a learner
starts it, and the page is driven with real clicks and typing (tests/browser.py).

- play, see the loss fall and the boundary change, pause, open the step, and compare every
  number of its forward pass, backward pass and update with a direct computation by jax.grad
  (test_playground_session.direct_step) from the W, b, x and y the page shows, and those with
  a session trained here;
- a bad value is shown beside its field while the server keeps running;
- two tabs train separately.
"""

import itertools
import json
import select
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from browser import Chromium
from conftest import cli_env
from test_playground_session import direct_step

from deltaprop.playground.problem import load_problem
from deltaprop.playground.session import TrainingSession
from deltaprop.playground.settings import parse_settings

pytestmark = pytest.mark.slow  # a server start, JIT compiles and a browser: tens of seconds


class Tabs(Chromium):
    """Chromium with several tabs: `open` makes a new one and drives it; `use` goes back."""

    def current(self) -> str:
        return self._session

    def use(self, tab: str) -> None:
        self._session = tab

    def click(self, selector: str) -> None:
        """A real click, after scrolling the element into view (the step view is below)."""
        self.evaluate(f"document.querySelector({json.dumps(selector)})"
                      ".scrollIntoView({block: 'center'})")
        super().click(selector)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The command as a learner runs it; its URL read from the line it prints."""
    script = Path(sys.executable).parent / "deltaprop-playground"
    command = [str(script)] if script.exists() else [shutil.which("deltaprop-playground")]
    assert command[0], "the deltaprop-playground command is not installed (pip install -e .)"
    log = tmp_path_factory.mktemp("playground") / "stderr.txt"
    with open(log, "w") as errors:
        process = subprocess.Popen([*command, "--port", "0"], stdout=subprocess.PIPE,
                                   stderr=errors, text=True, env=cli_env())
    try:
        ready, _, _ = select.select([process.stdout], [], [], 120)
        line = process.stdout.readline() if ready else ""
        assert line.startswith("deltaprop playground: http://127.0.0.1:"), (line, log.read_text())
        process.url = line.split()[2]
        yield process
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    chromium = Tabs()
    yield chromium
    chromium.close()


def number(browser, selector: str) -> float:
    return float(browser.evaluate(f"document.querySelector({json.dumps(selector)}).dataset.value"))


def type_into(browser, field: str, text: str) -> None:
    """Select the field's text, type over it, and leave the field (which fires `change`)."""
    browser.click(f"#{field}")
    browser.evaluate(f"document.getElementById('{field}').select()")
    browser.send("Input.insertText", {"text": text})
    browser.evaluate(f"document.getElementById('{field}').blur()")


def wait_idle(browser) -> None:
    browser.wait_for("document.body.dataset.state === 'paused' && "
                     "document.body.dataset.busy !== '1'")


def play_until(browser, step: int, timeout: float = 90) -> int:
    browser.click("#play")
    browser.wait_for(f"parseInt(document.body.dataset.step, 10) >= {step}", timeout)
    browser.click("#play")
    wait_idle(browser)
    return int(browser.evaluate("document.body.dataset.step"))


def boundary(browser) -> str:
    return browser.evaluate("document.getElementById('boundary').toDataURL()")


def shown_cells(browser) -> list:
    """Every number of every phase of the step view: (q, layer, n, i, j, text, value)."""
    cells = []
    count = browser.evaluate("document.querySelectorAll('#phase-links button').length")
    for index in range(count):
        browser.click(f"#phase-links button[data-index='{index}']")
        browser.wait_for(f"document.querySelector('#phase-links button.current')"
                         f".dataset.index === '{index}'")
        cells += json.loads(browser.evaluate(
            "JSON.stringify([...document.querySelectorAll('#step-tables td[data-q]')].map(c => "
            "[c.dataset.q, +c.dataset.layer, +(c.dataset.n || 0), +(c.dataset.i || 0), "
            "+c.dataset.j, c.textContent, +c.dataset.value]))"))
        if browser.evaluate("document.getElementById('step-view').dataset.phase")[:8] == "backward":
            assert browser.evaluate("document.getElementById('step-check').textContent").endswith("✓")
    return cells


def inputs_of(cells, sizes):
    """θ_t, x and y as the page shows them (data-value: the float64 values unrounded)."""
    params = [{"W": np.zeros((m, n)), "b": np.zeros(n)} for m, n in itertools.pairwise(sizes)]
    batch = 1 + max(n for _, _, n, *_ in cells)
    x, y = np.zeros((batch - 1, sizes[0])), np.zeros((batch - 1, sizes[-1]))
    for q, layer, n, i, j, _, value in cells:
        if q == "W":
            params[layer - 2]["W"][i - 1, j - 1] = value
        elif q == "b":
            params[layer - 2]["b"][j - 1] = value
        elif q == "x":
            x[n - 1, j - 1] = value
        elif q == "y":
            y[n - 1, j - 1] = value
    return params, x, y


def expected_value(oracle, y, q, layer, n, i, j) -> tuple[float, float]:
    """(the direct computation's value of one cell, the largest |value| of its matrix)."""
    layers = oracle["layers"]
    here = layers[layer - 2]
    matrices = {
        "z": here["z"], "a": here["a"], "delta": here["delta"], "grad_W": here["grad_W"],
        "grad_b": here["grad_b"][None], "new_W": here["new_W"], "new_b": here["new_b"][None],
        "error": here["a"] - y,
        "derivative": 1 - np.tanh(here["z"]) ** 2,  # the page trains tanh: φ'(z) = 1 − tanh²z
    }
    if q == "backpropagated":
        matrices[q] = layers[layer - 1]["delta"] @ layers[layer - 1]["W"].T
    matrix = np.asarray(matrices[q])
    row = 0 if q in ("grad_b", "new_b") else (i or n) - 1
    return float(matrix[row, j - 1]), float(np.max(np.abs(matrix)))


def test_play_pause_and_open_a_step_whose_numbers_are_jax_grads(browser, server):
    browser.open(server.url)
    assert browser.evaluate("document.body.dataset.step") == "0"
    first_loss, first_boundary = number(browser, "#train-loss"), boundary(browser)
    step = play_until(browser, 150)
    assert number(browser, "#train-loss") < 0.6 * first_loss  # defaults: moons, 6-6 tanh
    assert boundary(browser) != first_boundary
    points = browser.evaluate("document.querySelector('#loss-chart polyline')"
                              ".getAttribute('points').split(' ').length")
    assert points == step // 10 + 1  # one point per frame of 10 steps

    browser.click("#open-step")
    browser.wait_for(f"document.getElementById('step-view').dataset.step === '{step}' && "
                     "!!document.querySelector('#step-picture svg')", 30)
    assert browser.evaluate("document.getElementById('phase-name').textContent") == \
        "forward pass · layer 2"
    assert browser.evaluate("document.getElementById('step-previous').disabled")
    cells = shown_cells(browser)
    assert browser.evaluate("document.getElementById('step-next').disabled")  # at the update
    sizes = (2, 6, 6, 1)
    params, x, y = inputs_of(cells, sizes)
    oracle = jax.device_get(direct_step(params, x, y, 0.3, "bce", "tanh"))
    checked = 0
    for q, layer, n, i, j, text, value in cells:
        if q in ("W", "b", "x", "y"):
            continue
        expected, scale = expected_value(oracle, y, q, layer, n, i, j)
        assert abs(value - expected) <= 1e-12 * scale, (q, layer, n, i, j, value, expected)
        assert float(text) == pytest.approx(expected, rel=6e-4, abs=1e-300), (q, text, expected)
        checked += 1
    assert checked > 300

    # θ_t and the minibatch are the session's: the same settings trained here, frame by frame
    settings = parse_settings({})
    session = TrainingSession(settings, load_problem(settings))
    for _ in range(step // 10):
        session.advance(10)
    record = session.current_step()
    np.testing.assert_allclose(x, record.x, rtol=0, atol=0)
    for shown, ours in zip(params, session.params, strict=True):
        np.testing.assert_allclose(shown["W"], ours["W"], rtol=1e-12, atol=1e-14)

    # the worked example's picture of example 1 shows the same a_2 as the table
    shown_a = json.loads(browser.evaluate(
        "JSON.stringify([...document.querySelectorAll('#step-picture tspan[data-q=\"a\"]"
        "[data-layer=\"2\"]')].map(t => +t.textContent))"))
    np.testing.assert_allclose(shown_a, oracle["layers"][0]["a"][0], rtol=1e-3)
    assert "tanh" in browser.evaluate("document.getElementById('picture-note').textContent")

    browser.click("#step-once")  # one more step: the view of step t closes, it is past
    browser.wait_for(f"document.body.dataset.step === '{step + 1}' && "
                     "document.getElementById('step-view').hidden")


def test_a_bad_value_is_shown_by_its_field_and_the_server_keeps_running(browser, server):
    browser.open(server.url)
    type_into(browser, "learning_rate", "abc")
    browser.wait_for("document.getElementById('message').textContent.includes('learning_rate')")
    assert "'abc' is not a number" in browser.evaluate("document.getElementById('message').textContent")
    assert browser.evaluate("document.getElementById('learning_rate').classList.contains('invalid')")
    assert server.poll() is None
    type_into(browser, "learning_rate", "0.5")
    browser.wait_for("document.getElementById('message').textContent === ''")
    type_into(browser, "hidden", "4, 99")
    browser.wait_for("document.getElementById('message').textContent.includes('hidden')")
    assert browser.evaluate("document.getElementById('hidden').getAttribute('aria-invalid')") == "true"
    type_into(browser, "batch_size", "100000")  # hidden is still bad: it is named first
    browser.wait_for("document.getElementById('message').textContent.includes('hidden=')")
    type_into(browser, "hidden", "4")
    browser.wait_for("document.getElementById('message').textContent.includes('batch_size=100000 "
                     "is larger than the training split')")
    type_into(browser, "batch_size", "8")
    browser.wait_for("document.getElementById('message').textContent === ''")
    assert browser.evaluate("document.querySelectorAll('#network circle').length") == 2 + 4 + 1
    assert play_until(browser, 30) >= 30  # the server trains on, with the new settings
    assert server.poll() is None


def test_two_tabs_train_separately(browser, server):
    browser.open(server.url)
    first = browser.current()
    first_session = browser.evaluate("document.body.dataset.session")
    paused_at = play_until(browser, 40)
    browser.open(server.url)
    second = browser.current()
    assert browser.evaluate("document.body.dataset.session") != first_session
    assert browser.evaluate("document.body.dataset.step") == "0"
    type_into(browser, "hidden", "3")
    browser.wait_for("document.querySelectorAll('#network circle').length === 2 + 3 + 1")
    play_until(browser, 20)
    browser.use(first)  # the first tab kept its network and its step
    assert browser.evaluate("document.body.dataset.session") == first_session
    assert browser.evaluate("document.body.dataset.step") == str(paused_at)
    browser.click("#step-once")
    browser.wait_for(f"document.body.dataset.step === '{paused_at + 1}'")
    assert browser.evaluate("document.querySelectorAll('#network circle').length") == 2 + 6 + 6 + 1
    browser.use(second)
    assert int(browser.evaluate("document.body.dataset.step")) >= 20


def test_a_csv_file_chosen_in_the_page_trains(browser, server, tmp_path):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(120, 3))
    rows = [f"{a:.6f},{b:.6f},{c:.6f},{int(a + b > 0)}" for a, b, c in points]
    path = tmp_path / "points.csv"
    path.write_text("a,b,c,target\n" + "\n".join(rows) + "\n")
    browser.open(server.url)
    browser.evaluate("(() => { const d = document.getElementById('dataset'); d.value = 'csv';"
                     "d.dispatchEvent(new Event('change', {bubbles: true})); })()")
    browser.wait_for("document.getElementById('message').textContent.includes('choose a CSV')")
    type_into(browser, "csv_label", "target")  # no file yet: still asked for one
    browser.wait_for("document.getElementById('message').textContent.includes('choose a CSV')")
    document = browser.send("DOM.getDocument")["root"]["nodeId"]
    node = browser.send("DOM.querySelector", {"nodeId": document, "selector": "#csv"})["nodeId"]
    browser.send("DOM.setFileInputFiles", {"files": [str(path)], "nodeId": node})
    browser.wait_for("document.getElementById('message').textContent === '' && "
                     "document.querySelectorAll('#network circle').length === 3 + 6 + 6 + 1")
    assert "slice through 'a' and 'b'" in browser.evaluate(
        "document.getElementById('notes').textContent")
    assert "72 training" in browser.evaluate("document.getElementById('notes').textContent")
    first = number(browser, "#train-loss")
    play_until(browser, 100)
    assert number(browser, "#train-loss") < 0.7 * first  # a linear rule on a and b: learnable
