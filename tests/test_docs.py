"""docs/backprop.md names only functions that exist and states every equation of the derivation."""

import importlib
import re
from pathlib import Path

import pytest
from conftest import compose_config

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
    from deltaprop.run.config import read
    from deltaprop.teaching.worked_example import worked_example

    cfg = compose_config("experiment=worked_example_by_hand")
    params, x, y = worked_example_inputs(read(cfg), cfg.worked_example.batch)
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
