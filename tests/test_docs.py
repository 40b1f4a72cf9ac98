"""docs/backprop.md names only functions that exist, states every equation of the derivation, and
quotes only numbers that the programs print (README.md's and the notebook's too)."""

import importlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config, compose_experiment

# The module deltaprop.backprop (its docstring holds the equations).
BACKPROP_MODULE = importlib.import_module("deltaprop.backprop")
ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "backprop.md"
# References are written in full and in backticks: `deltaprop.backprop.manual_grad`.
REFERENCE = re.compile(r"`(deltaprop(?:\.[A-Za-z_]\w*)+)")

# Each equation of the derivation, exactly as the doc (and the code comments) write it.
EQUATIONS = (
    "z_l = a_{l−1} W_l + b_l",  # forward, every layer
    "a_l = σ(z_l)",
    "max(z, 0) − z y + log(1 + e^{−|z|})",  # the stable loss from logits
    "σ'(z) = e^{−z} / (1 + e^{−z})² = σ(z)(1 − σ(z)) = a(1 − a)",
    "∂l/∂z = ∂l/∂a · σ'(z) = (a − y) / (a(1 − a)) · a(1 − a) = a − y",  # σ' cancels
    "δ_L = (a_L − y) / (N·n_L)",  # output layer
    "δ_l = (δ_{l+1} W_{l+1}ᵀ) ⊙ a_l(1 − a_l)",  # hidden layers
    "∂L/∂W_l = a_{l−1}ᵀ δ_l",
    "∂L/∂b_l = Σ_batch δ_l",
    "θ ← θ − η ∂L/∂θ",  # the update
    "‖δ_l‖ ≤ ‖δ_{l+1} W_{l+1}ᵀ‖ · max a_l(1 − a_l) ≤ ‖W_{l+1}‖₂ ‖δ_{l+1}‖ / 4",
)
# The same recursion in the five-layer network, last layer first.
FIVE_LAYER_DELTAS = (
    "δ_5 = (a_5 − y) / (N·n_5)",
    "δ_4 = (δ_5 W_5ᵀ) ⊙ a_4(1 − a_4)",
    "δ_3 = (δ_4 W_4ᵀ) ⊙ a_3(1 − a_3)",
    "δ_2 = (δ_3 W_3ᵀ) ⊙ a_2(1 − a_2)",
)
# Equations the doc shares, character for character, with deltaprop.backprop's docstring.
SHARED_WITH_BACKPROP = (
    "δ_L = (a_L − y) / (N·n_L)",
    "δ_l = (δ_{l+1} W_{l+1}ᵀ) ⊙ a_l(1 − a_l)",
    "∂L/∂W_l = a_{l−1}ᵀ δ_l",
    "∂L/∂b_l = Σ_batch δ_l",
)
REQUIRED_REFERENCES = {
    "deltaprop.network.forward",
    "deltaprop.network.linear",
    "deltaprop.losses.binary_cross_entropy_with_logits",
    "deltaprop.losses.loss_fn",
    "deltaprop.backprop.backprop_trace",
    "deltaprop.backprop.manual_grad",
    "deltaprop.training.make_train_step",
    "deltaprop.diagnostics.layer_statistics",
    "deltaprop.gradient_check.gradcheck",
    "deltaprop.teaching.worked_example.worked_example",
    "deltaprop.teaching.history.training_history",
    "deltaprop.teaching.svg.format_svg",
    "deltaprop.teaching.page.format_page",
}
# The textbook's column form beside the code's row form: one pair per line of the derivation.
TEXTBOOK_AND_CODE = (
    ("z^l = w^l a^{l−1} + b^l", "z_l = a_{l−1} W_l + b_l"),
    ("δ^L = a^L − y", "δ_L = (a_L − y) / (N·n_L)"),
    ("δ^l = ((w^{l+1})ᵀ δ^{l+1}) ⊙ σ'(z^l)", "δ_l = (δ_{l+1} W_{l+1}ᵀ) ⊙ a_l(1 − a_l)"),
    ("∂C_x/∂b^l_j = δ^l_j", "∂L/∂b_l = Σ_batch δ_l"),
    ("∂C_x/∂w^l_{ji} = a^{l−1}_i δ^l_j", "∂L/∂W_l = a_{l−1}ᵀ δ_l"),
)


def worked_example_config(experiment: str):
    """The worked example command's config (conf/worked_example.yaml) with `experiment`."""
    return compose_config(f"experiment={experiment}", config_name="worked_example")


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def resolve(dotted: str):
    """Import the longest module prefix of `dotted`, then getattr the rest."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            target = getattr(target, name)  # AttributeError: the doc names something missing
        return target
    raise ModuleNotFoundError(dotted)


def test_every_named_function_exists(doc):
    names = set(REFERENCE.findall(doc))
    assert REQUIRED_REFERENCES <= names, sorted(REQUIRED_REFERENCES - names)
    missing = []
    for name in sorted(names):
        try:
            target = resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
            continue
        assert callable(target), f"{name} is named as a function but is not callable"
    assert not missing, f"docs/backprop.md names functions that do not exist: {missing}"


def test_resolve_rejects_a_missing_function():
    assert resolve("deltaprop.backprop.manual_grad") is BACKPROP_MODULE.manual_grad
    with pytest.raises(AttributeError):
        resolve("deltaprop.backprop.no_such_function")
    with pytest.raises(ModuleNotFoundError):
        resolve("nonexistent_package_xyz.f")


@pytest.mark.parametrize("equation", EQUATIONS + FIVE_LAYER_DELTAS)
def test_doc_states_every_equation(doc, equation):
    assert equation in doc


@pytest.mark.parametrize("equation", SHARED_WITH_BACKPROP)
def test_doc_and_backprop_docstring_agree(equation):
    assert equation in BACKPROP_MODULE.__doc__


def test_five_layer_deltas_appear_last_layer_first(doc):
    positions = [doc.index(equation) for equation in FIVE_LAYER_DELTAS]
    assert positions == sorted(positions)


def test_vanishing_gradient_figure_is_referenced_with_its_command(doc):
    assert "](vanishing_gradients.png)" in doc
    assert (ROOT / "docs" / "vanishing_gradients.png").is_file()
    assert "python experiments/train.py experiment=vanishing_gradients" in doc
    assert "python experiments/vanishing_gradients.py experiment=vanishing_gradients" in doc
    assert "≤ 1/4" in doc


def test_named_entry_points_exist(doc):
    scripts = set(re.findall(r"python (experiments/\w+\.py)", doc))
    assert {"experiments/worked_example.py", "experiments/gradcheck.py"} <= scripts
    for script in scripts:
        assert (ROOT / script).is_file(), script


def test_one_notation_two_deltas_and_the_index_map(doc):
    assert "**W_l[i, j] = w^l_{ji}**" in doc
    assert "δ_l[n, j] = δ^l_j(x_n) / (N·n_L)" in doc
    for rule in ("BP1", "BP2", "BP3", "BP4"):
        assert rule in doc
    for textbook, code in TEXTBOOK_AND_CODE:
        row = next(line for line in doc.splitlines() if textbook in line)
        assert code in row, f"{textbook!r} and {code!r} are not side by side"
    # the old conflation is gone: δ_L (the code's) is never written as a_L − y alone
    assert not re.search(r"δ_L = a_L − y(?! \()", doc)
    for module in (BACKPROP_MODULE, importlib.import_module("deltaprop.diagnostics")):
        assert "δ^l" in module.__doc__  # the docstrings name the textbook's δ^l as well
    assert "W_l[i, j] = w^l_{ji}" in BACKPROP_MODULE.__doc__


@pytest.fixture(scope="module")
def by_hand_example():
    from deltaprop.cli.teaching import worked_example_inputs
    from deltaprop.teaching.worked_example import worked_example

    cfg = worked_example_config("worked_example_by_hand")
    params, x, y = worked_example_inputs(cfg, cfg.worked_example.batch)
    return worked_example(params, x, y, cfg.optimizer.lr)


def test_the_calculator_walkthrough_quotes_the_current_output(doc, by_hand_example):
    from deltaprop.teaching.render import format_console

    section = doc[doc.index("## A calculator-sized example, by hand") :
                  doc.index("## Stepping through training in the browser")]
    assert "python experiments/worked_example.py worked_example.mode=by_hand" in section
    printed = {line.strip() for line in format_console(by_hand_example, by_hand=True).splitlines()}
    quoted = [line for block in re.findall(r"```text\n(.*?)```", section, flags=re.DOTALL)
              for line in block.splitlines()]
    assert len(quoted) >= 12
    stale = [line for line in quoted if line.strip() not in printed]
    assert not stale, stale


def test_the_picture_in_the_docs_is_what_the_code_draws(doc, by_hand_example):
    from deltaprop.teaching.svg import format_svg, picture_of_example

    assert "](network.svg)" in doc
    drawn = format_svg(picture_of_example(by_hand_example))
    assert (ROOT / "docs" / "network.svg").read_text(encoding="utf-8") == drawn


def test_the_page_and_its_screenshot_are_documented(doc):
    assert "python experiments/worked_example.py worked_example.page=true" in doc
    assert "](backprop_page.png)" in doc
    assert (ROOT / "docs" / "backprop_page.png").stat().st_size > 20_000
    assert "--screenshot=docs/backprop_page.png" in doc
    assert "#step=3&phase=backward&layer=3" in doc


# ------------------------------------------------------- every number the prose quotes, recomputed
# The prose's numbers are read from the prose and the program's from what the program prints (or,
# for the page's charts, from the history it plots), and the two compared: nothing is written
# down twice.

README = ROOT / "README.md"
TRAINING = ROOT / "docs" / "training.md"  # the manual page on training, moved out of README
NOTEBOOK = ROOT / "docs" / "backprop.ipynb"
# A row of the worked example's Taylor table: step, actual, first order, off by, second, off by.
TAYLOR_ROW = re.compile(r"^ +(η|η/10) = \S+ +\S+ +\S+ +([\d.]+)% +\S+ +([\d.]+)%$", re.MULTILINE)


def quoted(pattern: str, text: str) -> tuple[str, ...]:
    """The groups of the one match of `pattern` (its spaces match any run of white space)."""
    matches = re.findall(pattern.replace(" ", r"\s+"), text)
    assert len(matches) == 1, (pattern, matches)
    return matches[0] if isinstance(matches[0], tuple) else (matches[0],)


def agrees(text: str, value: float) -> bool:
    """`value` rounded as `text` is written (its decimals) is `text`: 3.9 for 3.908, 315 for 315.2."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    return round(value, decimals) == float(text)


def taylor_misses(printed: str) -> dict[str, tuple[str, str]]:
    """{"η": (first order off by, second order off by), "η/10": ...} as printed, without %."""
    return {step: (first, second) for step, first, second in TAYLOR_ROW.findall(printed)}


@pytest.fixture(scope="module")
def five_layer_example():
    from deltaprop.cli.teaching import worked_example_inputs
    from deltaprop.teaching.worked_example import worked_example

    cfg = worked_example_config("worked_example")
    params, x, y = worked_example_inputs(cfg, cfg.worked_example.batch)
    return worked_example(params, x, y, cfg.optimizer.lr)


@pytest.fixture(scope="module")
def printed(by_hand_example, five_layer_example) -> dict[str, str]:
    """What `python experiments/worked_example.py` prints, by hand and for the five layers."""
    from deltaprop.teaching.render import format_console

    return {"calculator": format_console(by_hand_example, by_hand=True),
            "five-layer": format_console(five_layer_example)}


def test_the_taylor_percentages_are_the_printed_ones(doc, printed):
    calculator, five = (taylor_misses(printed[name]) for name in ("calculator", "five-layer"))
    assert set(calculator) == set(five) == {"η", "η/10"}
    readme = README.read_text(encoding="utf-8")
    assert quoted(r"at η = 1 the first-order prediction −η‖g‖² is ([\d.]+)% off the actual "
                  r"change, and ([\d.]+)% at η/10", readme) == (five["η"][0], five["η/10"][0])
    assert quoted(r"at η = 1 it is ([\d.]+)% in the calculator case and ([\d.]+)% in the "
                  r"five-layer network; at η/10 it is ([\d.]+)% and ([\d.]+)%, about ten times "
                  r"less", doc) == (calculator["η"][0], five["η"][0], calculator["η/10"][0],
                                    five["η/10"][0])
    for misses in (calculator, five):  # "about ten times less"
        assert 8 < float(misses["η"][0]) / float(misses["η/10"][0]) < 13
    # The calculator walkthrough: the loss, the two predictions and their misses.
    before, after = quoted(r"loss before ([\d.]+), after ([\d.]+):", printed["calculator"])
    assert quoted(r"lowers the loss from ([\d.]+) to ([\d.]+),", doc) == (before, after)
    assert quoted(r"says −[\d.]+: ([\d.]+)% too much", doc) == (calculator["η"][0],)
    assert quoted(r"\(([\d.]+)% off\); at η/10 = 0.1 the first order is ([\d.]+)% off", doc) == (
        calculator["η"][1], calculator["η/10"][0])
    curvature = quoted(r"‖g‖² = [\d.]+, gᵀHg = ([\d.]+)", printed["calculator"])
    assert quoted(r"with gᵀHg = ([\d.]+),", doc) == curvature


def test_the_shrinking_of_delta_is_the_examples(doc, by_hand_example):
    """'‖δ_l‖ shrinks 3.9×, 15× and 5.4× ... 315× in all' and the notebook's 3.9×."""
    norms = {layer: float(np.linalg.norm(by_hand_example.layer(layer).delta))
             for layer in range(2, 6)}
    steps = quoted(r"‖δ_l‖ shrinks ([\d.]+)×, ([\d.]+)× and ([\d.]+)× from one layer to the "
                   r"next, ([\d.]+)× in all", doc)
    ratios = [norms[5] / norms[4], norms[4] / norms[3], norms[3] / norms[2], norms[5] / norms[2]]
    assert all(agrees(text, ratio) for text, ratio in zip(steps, ratios, strict=True)), steps
    assert ratios[0] < 4 and "a little less than 4×" in doc
    weight = quoted(r"through W_5\[1,1\] = (−[\d.]+), a little", doc)[0]
    assert float(weight.replace("−", "-")) == pytest.approx(
        float(by_hand_example.layer(5).weights[0, 0]), abs=5e-4)
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    markdown = "".join("".join(cell["source"]) for cell in notebook["cells"]
                       if cell["cell_type"] == "markdown")
    (shrink,) = quoted(r"‖δ_5‖/‖δ_4‖ is ([\d.]+)× from layer 5 to layer 4", markdown)
    assert agrees(shrink, ratios[0])
    assert "at least four times" not in markdown


def test_the_pages_vanishing_delta_is_the_historys(doc):
    """'over the 20 steps of the five-layer page ‖δ_5‖/‖δ_2‖ stays at 41–45×; in the calculator
    case it is 315× at step 0 and 53× at step 19': the ratio the page's chart plots."""
    from deltaprop.cli.teaching import worked_example_inputs
    from deltaprop.teaching.history import training_history

    ratios = {}
    for name, experiment in (("five", "worked_example"), ("calculator", "worked_example_by_hand")):
        cfg = worked_example_config(experiment)
        params, x, y = worked_example_inputs(cfg, cfg.worked_example.batch)
        history = training_history(params, x, y, cfg.optimizer.lr, cfg.worked_example.page_steps)
        norms = history.delta_norms()  # (T, L − 1): ‖δ_2‖ first
        ratios[name] = norms[:, -1] / norms[:, 0]
    steps, low, high, first, last, at = quoted(
        r"over the (\d+) steps of the five-layer page ‖δ_5‖/‖δ_2‖ stays at (\d+)–(\d+)×; in the "
        r"calculator case it is (\d+)× at step 0 and (\d+)× at step (\d+)", doc)
    assert int(steps) == len(ratios["five"]) and int(at) == len(ratios["calculator"]) - 1
    assert agrees(low, ratios["five"].min()) and agrees(high, ratios["five"].max())
    assert agrees(first, ratios["calculator"][0]) and agrees(last, ratios["calculator"][-1])


def test_the_learning_slowdown_says_how_it_departs_from_nielsen(doc):
    cfg = compose_experiment("learning_slowdown")
    rate, epochs = quoted(r"runs both costs at η = ([\d.]+) for (\d+) epochs", doc)
    assert float(rate) == cfg.optimizer.lr and int(epochs) == cfg.learning_slowdown.epochs
    assert "the cross-entropy at η = 0.005" in doc  # Nielsen's own rate for it (ch. 3)


def test_the_initializations_are_described_as_the_code_draws_them(doc):
    import jax

    from deltaprop.network import init_params

    start = doc.index("`deltaprop.network.init_params`:")
    description = doc[start:doc.index("\n\n", start)]
    assert "both with zero biases" in description and "`nielsen`" in description
    assert "b ~ N(0, 1)" in description and "Nielsen's N(0, 1/n_in), zero biases" not in doc
    key = jax.random.key(0)
    for init, zero_biases in (("xavier", True), ("normal", True), ("nielsen", False)):
        biases = init_params(key, (3, 4, 1), init)[0]["b"]
        assert bool(np.all(biases == 0)) == zero_biases, init


def test_the_exit_codes_and_logs_are_what_the_programs_do(doc, run_command, tmp_path):
    """'exits 4 if any check fails (2 on bad input)' (README), and the run directory's
    <command>.log holds what the command printed (docs/training.md)."""
    readme = README.read_text(encoding="utf-8")
    failed = run_command("worked_example", "optimizer.lr=10000", "logger=none",
                         f"hydra.run.dir={tmp_path / 'failed'}")  # the loss rises: a failed check
    bad = run_command("worked_example", "loss=mse", f"hydra.run.dir={tmp_path / 'bad'}")
    injected = run_command("gradcheck", "gradcheck.inject=missing_mean", "model.hidden=[3]",
                           "logger=none", f"hydra.run.dir={tmp_path / 'gradcheck'}")
    claims = re.findall(r"exits (\d+) if any (?:check|row) fails", readme + doc)
    assert len(claims) >= 3
    assert {int(code) for code in claims} == {failed.returncode, injected.returncode}
    assert re.findall(r"exits \d+ if any check fails \((\d+) on bad input",
                      readme + doc) == [str(bad.returncode)] * 2
    log = (tmp_path / "failed" / "worked_example.log").read_text(encoding="utf-8")
    assert "CHECKS FAILED" in failed.stdout and "CHECKS FAILED" in log
    assert "Backward pass: layer 5 down to layer 2" in log  # the tables, not just a summary
    table = (tmp_path / "gradcheck" / "gradcheck.log").read_text(encoding="utf-8")
    assert table.count("FAIL") == injected.stdout.count("FAIL") == 5
    assert "`train.log` (`gradcheck.log`, ...) has it too" in TRAINING.read_text(encoding="utf-8")


def test_the_learning_slowdown_table_is_the_neurons(doc):
    """Each row of the table (a at epochs 0, 10, 50, 300; the first epoch with a < 0.1) and the
    prose after it, from the runs experiments/learning_slowdown.py trains and prints."""
    from deltaprop.teaching.learning_slowdown import first_epoch_within, slowdown_runs

    cfg = compose_experiment("learning_slowdown")
    settings = cfg.learning_slowdown
    runs = slowdown_runs([list(start) for start in settings.starts], settings.x, settings.y,
                         cfg.optimizer.lr, 1000)  # 1000: the table's learning_slowdown.epochs=1000
    by_row = {(run.loss, run.start): run for run in runs}
    rows, start = [], None
    for line in doc.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 7 and cells[2] in ("cross-entropy", "quadratic"):
            if cells[0]:
                numbers = [float(v) for v in re.findall(r"[\d.]+", cells[0].replace("w = b", "w"))]
                start = (numbers[0], numbers[-1])
            rows.append((start, "bce" if cells[2] == "cross-entropy" else "mse", cells))
    assert len(rows) == 2 * len(settings.starts)
    for (w, b), loss, cells in rows:
        run = by_row[(loss, (w, b))]
        if cells[1]:  # a at epoch 0, and σ'(w x + b) = a(1 − a)
            a0, slope = re.fullmatch(r"([\d.]+) \(σ'\([\d.]+\) = ([\d.]+)\)", cells[1]).groups()
            assert agrees(a0, run.output[0]) and agrees(slope, run.output[0] * (1 - run.output[0]))
        for text, epoch in zip(cells[3:6], (10, 50, int(settings.epochs)), strict=True):
            assert agrees(text, run.output[epoch]), (loss, w, b, epoch, text)
        first = first_epoch_within(run, settings.y, settings.threshold)
        assert cells[6].split()[0] == str(first)
        assert ("epochs=1000" in cells[6]) == (first > settings.epochs)
    saturated = by_row[("mse", (2.0, 2.0))].output
    (above, epochs) = quoted(r"leaves the output above ([\d.]+) for (\d+) epochs", doc)
    assert np.all(saturated[:int(epochs) + 1] > float(above))
    quadratic, cross = quoted(r"its output first falls below 0.5 at epoch (\d+), the "
                              r"cross-entropy's at epoch (\d+)", doc)
    for run, text in ((by_row[("mse", (2.0, 2.0))], quadratic),
                      (by_row[("bce", (2.0, 2.0))], cross)):
        assert int(np.flatnonzero(run.output < 0.5)[0]) == int(text)
