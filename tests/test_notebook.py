"""docs/backprop.ipynb holds the five sections and hidden answers it promises, is committed with
its outputs (a learner reads its numbers, tables and plots on GitHub without running it), and a
fresh run finds those outputs again.

The notebook runs in a fresh kernel (nbclient, as `jupyter nbconvert --execute` would) whose
kernel spec is written here, pointing at this interpreter (`sys.executable`): a kernel spec
installed elsewhere for "python3" may start another Python, without this checkout's deltaprop.

A fresh run is compared with the committed outputs cell by cell (`differences`):
- text (stdout, stderr, and text/plain or other text data): whitespace runs collapsed, a time
  such as "took 1.2 s" read as "<time>", then every number and the words between them equal,
  each number exactly as printed. Exactly, not to a tolerance: the kernel computes on the CPU in
  float64 and XLA's CPU programs are deterministic, so a rerun prints the same digits. Another
  CPU or jax version may change the figures at rounding level (the ~1e-17 and ~1e-12 errors of
  the gradient check's passing rows); then regenerate the outputs and review the diff.
- images (image/png, image/svg+xml): present in the same outputs; their bytes are not compared.
- errors: none, in the committed notebook or the fresh run.
Stream text is compared per stream (stdout, stderr) whatever its position among a cell's
displays, since the kernel's stdout and its displays may arrive in either order.

Regenerate the committed outputs (after changing the notebook or what it prints):

    python tests/test_notebook.py

It runs the notebook top to bottom in the same fresh kernel and writes docs/backprop.ipynb with
its outputs: execution counts 1, 2, ... in order, one output per stream, no timing metadata and
the notebook's metadata as committed (not the Python version of the machine that ran it).
"""

import copy
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).parents[1] / "docs" / "backprop.ipynb"
SECTIONS = (
    "## 1. The calculator case",
    "## 2. The costs",
    "## 3. The picture",
    "## 4. The gradient check",
    "## 5. Exercises",
)
CELL_TIMEOUT = 300  # seconds per cell; the whole notebook takes ~10-25 s on 2 busy cores
MAX_BYTES = 1_000_000  # the committed notebook, outputs included
ANSWER = re.compile(r"<details><summary>Answer</summary>\n(.+?)\n</details>", re.DOTALL)
# The kernel as a learner's: XLA's default flags (conftest lowers the suite's optimization
# level, which changes the rounding-level digits).
KERNEL_ENV = {"JAX_PLATFORMS": "cpu", "WANDB_MODE": "offline", "WANDB_SILENT": "true",
              "XLA_FLAGS": ""}
IMAGES = {"image/png", "image/svg+xml"}  # the loss curves and the network's picture
# A time as a program prints it ("took 1.2 s", "in 35 ms"); such numbers change run to run.
TIMING = re.compile(r"\b\d+(?:\.\d+)?\s?(?:ns|µs|us|ms|s|sec|seconds?|min|minutes?)\b")
NUMBER = re.compile(r"([-+−]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+−]?\d+)?|\bnan\b|\binf\b)")
# What would change from run to run or machine to machine, and has no place in an output.
UNSTABLE = {
    "an absolute path": re.compile(r"(?<![\w.])(?:/(?:home|root|tmp|usr|opt|work|Users|var)/"
                                   r"|[A-Z]:\\)"),
    "a memory address": re.compile(r"\b0x[0-9a-fA-F]{6,}\b"),
    "a timestamp": re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"),
}


def _cells(kind: str) -> list[str]:
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == kind]


def _code_cells(notebook: dict) -> list[dict]:
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def _text(value: str | list[str]) -> str:
    """Output text as nbformat holds it in memory (a string) or on disk (a list of lines)."""
    return value if isinstance(value, str) else "".join(value)


# ---- running the notebook ------------------------------------------------------------------

def run_notebook(kernels: Path):
    """docs/backprop.ipynb executed top to bottom in a fresh kernel of this interpreter.

    Returns (the executed notebook, the kernel's `sys.executable`). Raises nbclient's
    CellExecutionError, naming the cell, on any error.
    """
    try:
        import nbformat
        from ipykernel.kernelspec import write_kernel_spec
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager
        from nbclient import NotebookClient
    except ImportError as error:  # a failure, not a skip: the dev extra lists them
        pytest.fail(f"running docs/backprop.ipynb needs nbclient, nbformat and ipykernel "
                    f"(pip install -e '.[dev]'): {error}")

    write_kernel_spec(kernels / "python3", overrides={"env": KERNEL_ENV})
    manager = KernelManager(kernel_name="python3",
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # One more cell, run after the notebook's own and removed again: which Python the kernel was.
    notebook.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    # record_timing=False: no timestamps in the cells' metadata; coalesce_streams: one output per
    # stream, however the kernel happened to flush it.
    client = NotebookClient(notebook, km=manager, kernel_name="python3", timeout=CELL_TIMEOUT,
                            record_timing=False, coalesce_streams=True,
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    start = time.perf_counter()
    try:
        client.execute()
    finally:  # nbclient shuts down only the kernels it started itself
        if manager.has_kernel:
            manager.shutdown_kernel(now=True)
    print(f"docs/backprop.ipynb ran in {time.perf_counter() - start:.1f} s")
    interpreter = notebook.cells.pop()
    return notebook, _text(interpreter.outputs[0]["text"]).strip()


def regenerate_outputs() -> None:
    """Run the notebook and write it back to docs/backprop.ipynb with its outputs."""
    import nbformat

    committed = nbformat.read(NOTEBOOK, as_version=4)
    with tempfile.TemporaryDirectory(prefix="deltaprop-kernels-") as kernels:
        notebook, _ = run_notebook(Path(kernels))
    notebook.metadata = committed.metadata  # not the language version of this machine's kernel
    temporary = NOTEBOOK.with_name(NOTEBOOK.name + ".tmp")
    nbformat.write(notebook, temporary)
    os.replace(temporary, NOTEBOOK)
    print(f"wrote docs/backprop.ipynb ({NOTEBOOK.stat().st_size:,} bytes)")


# ---- comparing outputs ---------------------------------------------------------------------

def _tokens(text: str) -> list[str]:
    """Words and numbers alternately (numbers at odd indices), whitespace and times normalized."""
    return NUMBER.split(TIMING.sub("<time>", " ".join(text.split())))


def compare_text(where: str, committed: str, fresh: str) -> list[str]:
    """The first difference between two output texts, as one line (none: [])."""
    old, new = _tokens(committed), _tokens(fresh)
    for index, (before, now) in enumerate(zip(old, new)):
        if before != now:
            kind = "number" if index % 2 else "text"
            context = "".join(old[max(index - 4, 0):index]).strip()[-60:]
            return [f"{where}: {kind} {before!r} committed, {now!r} now (after {context!r})"]
    if len(old) != len(new):
        longer = len(new) > len(old)
        rest = "".join(new[len(old):] if longer else old[len(new):])
        return [f"{where}: the text now {'goes on with' if longer else 'ends before'} {rest[:60]!r}"]
    return []


def _parts(outputs: list[dict]) -> tuple[dict[str, str], list[dict], list[str]]:
    """A cell's outputs as (stream name -> its text, the other outputs in order, the errors)."""
    streams, shown, errors = {}, [], []
    for output in outputs:
        if output["output_type"] == "stream":
            streams[output["name"]] = streams.get(output["name"], "") + _text(output["text"])
        elif output["output_type"] == "error":
            errors.append(f"{output['ename']}: {output['evalue']}")
        else:
            shown.append(output)
    return streams, shown, errors


def differences(committed: dict, fresh: dict) -> list[str]:
    """Where a fresh run of the notebook differs from its committed outputs, one line each."""
    problems = []
    committed_cells, fresh_cells = _code_cells(committed), _code_cells(fresh)
    if [cell["source"] for cell in committed_cells] != [cell["source"] for cell in fresh_cells]:
        return ["the two notebooks do not have the same code cells"]
    for number, (old, new) in enumerate(zip(committed_cells, fresh_cells, strict=True), start=1):
        where = f"code cell {number}"
        old_streams, old_shown, old_errors = _parts(old["outputs"])
        new_streams, new_shown, new_errors = _parts(new["outputs"])
        problems += [f"{where}: committed with an error, {error}" for error in old_errors]
        problems += [f"{where}: raised {error}" for error in new_errors]
        for name in sorted(old_streams.keys() | new_streams.keys()):
            problems += compare_text(f"{where} {name}", old_streams.get(name, ""),
                                     new_streams.get(name, ""))
        if len(old_shown) != len(new_shown):
            problems.append(f"{where}: {len(old_shown)} displays committed, {len(new_shown)} now")
            continue
        for index, (before, now) in enumerate(zip(old_shown, new_shown), start=1):
            kinds = [[output["output_type"], *sorted(output.get("data", {}))]
                     for output in (before, now)]
            if kinds[0] != kinds[1]:
                problems.append(f"{where} display {index}: {kinds[0]} committed, {kinds[1]} now")
                continue
            for kind in before.get("data", {}):
                if kind.startswith("text/"):  # images: present in both, bytes not compared
                    problems += compare_text(f"{where} display {index} {kind}",
                                             _text(before["data"][kind]), _text(now["data"][kind]))
    return problems


# ---- tests without a kernel ----------------------------------------------------------------

def test_the_notebook_has_five_sections_and_hides_every_answer():
    markdown = "\n".join(_cells("markdown"))
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert len(headings) == len(SECTIONS), headings
    for heading, section in zip(headings, SECTIONS, strict=True):
        assert heading.startswith(section), (heading, section)
    exercises = markdown[markdown.index(SECTIONS[-1]):].split("\n### Exercise ")[1:]
    assert 3 <= len(exercises) <= 4, len(exercises)
    for exercise in exercises:
        answers = ANSWER.findall(exercise)
        assert len(answers) == 1 and answers[0].strip(), exercise  # one answer, in <details>
        assert "Answer" not in ANSWER.sub("", exercise), exercise  # and nothing of it outside


def test_the_notebook_is_committed_with_its_outputs_from_one_run_in_order():
    assert NOTEBOOK.stat().st_size < MAX_BYTES, NOTEBOOK.stat().st_size
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = _code_cells(notebook)
    assert [cell["execution_count"] for cell in code] == list(range(1, len(code) + 1))
    assert all("execution" not in cell["metadata"] for cell in code)  # no timestamps
    outputs = [output for cell in code for output in cell["outputs"]]
    showing = [cell for cell in code if re.search(r"\b(?:print|display|plt\.show)\(",
                                                   _text(cell["source"]))]
    assert len(showing) >= 9 and all(cell["outputs"] for cell in showing)  # what they show
    assert not [output for output in outputs if output["output_type"] == "error"]
    assert IMAGES <= {kind for output in outputs for kind in output.get("data", {})}
    for cell in code:
        names = [output["name"] for output in cell["outputs"] if output["output_type"] == "stream"]
        assert len(names) == len(set(names)), cell["source"]  # one output per stream
    text = "\n".join([_text(output.get("text", "")) for output in outputs]
                     + ["\n".join(output.get("traceback", [])) for output in outputs]
                     + [_text(value) for output in outputs
                        for kind, value in output.get("data", {}).items()
                        if kind.startswith("text/")])
    for what, pattern in UNSTABLE.items():
        assert not pattern.search(text), f"an output holds {what}: {pattern.search(text)[0]!r}"


def test_the_comparison_finds_an_edited_number_and_forgives_times_and_image_bytes():
    import nbformat

    committed = nbformat.read(NOTEBOOK, as_version=4)
    assert differences(committed, copy.deepcopy(committed)) == []

    edited = copy.deepcopy(committed)
    stream = next(output for cell in _code_cells(edited) for output in cell["outputs"]
                  if output["output_type"] == "stream" and re.search(r"\d\.\d", output["text"]))
    number = re.search(r"\d\.\d+", stream["text"])[0]
    stream["text"] = stream["text"].replace(number, number[:-1] + str((int(number[-1]) + 1) % 10),
                                            1)
    found = differences(committed, edited)
    assert len(found) == 1 and "number" in found[0] and repr(number) in found[0], found

    images = copy.deepcopy(committed)
    drawn = [cell for cell in _code_cells(images)
             if any(IMAGES & set(output.get("data", {})) for output in cell["outputs"])]
    assert len(drawn) >= 2
    for output in [output for cell in drawn for output in cell["outputs"]]:
        for kind in IMAGES & set(output.get("data", {})):
            output["data"][kind] = "other bytes"
    assert differences(committed, images) == []  # image bytes are not compared
    for cell in drawn:
        cell["outputs"] = [output for output in cell["outputs"]
                           if not IMAGES & set(output.get("data", {}))]
    found = differences(committed, images)
    assert len(found) == len(drawn) and all("displays committed" in line for line in found), found

    failed = copy.deepcopy(committed)
    _code_cells(failed)[-1]["outputs"].append(nbformat.v4.new_output(
        "error", ename="AssertionError", evalue="", traceback=[]))
    last = len(_code_cells(failed))
    assert differences(committed, failed) == [f"code cell {last}: raised AssertionError: "]

    assert compare_text("x", "loss 0.49 (took 1.2 s)\n", "loss  0.49 (took 13 ms)") == []
    assert compare_text("x", "loss 0.49", "loss 0.48") != []
    assert compare_text("x", "loss 0.49", "loss 0.49 0.3") != []
    assert compare_text("x", "loss 0.49", "cost 0.49") != []


# ---- tests that run the notebook -----------------------------------------------------------

@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory):
    """(the notebook run now in a fresh kernel, the kernel's sys.executable), once per module."""
    return run_notebook(tmp_path_factory.mktemp("kernels"))


@pytest.mark.slow
def test_the_notebook_runs_without_errors(fresh_run):
    notebook, interpreter = fresh_run
    assert interpreter == sys.executable
    errors = [output for cell in _code_cells(notebook) for output in cell.outputs
              if output.output_type == "error"]
    assert not errors, errors
    shown = {kind for cell in _code_cells(notebook) for output in cell.outputs
             for kind in output.get("data", {})}
    assert IMAGES <= shown


@pytest.mark.slow
def test_a_fresh_run_finds_the_committed_numbers(fresh_run):
    import nbformat

    committed = nbformat.read(NOTEBOOK, as_version=4)
    found = differences(committed, fresh_run[0])
    assert not found, ("docs/backprop.ipynb's committed outputs differ from a fresh run "
                       "(if the change is meant, regenerate: python tests/test_notebook.py):\n"
                       + "\n".join(found))


if __name__ == "__main__":
    regenerate_outputs()
