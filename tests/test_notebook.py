"""docs/backprop.ipynb runs from top to bottom, and holds the five sections and hidden answers it
promises.

The notebook runs in a fresh kernel (nbclient, as `jupyter nbconvert --execute` would) whose
kernel spec is written here, pointing at this interpreter (`sys.executable`): a kernel spec
installed elsewhere for "python3" may start another Python, without this checkout's deltaprop.
"""

import json
import re
import sys
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
CELL_TIMEOUT = 300  # seconds per cell; the whole notebook takes ~15-25 s on 2 busy cores
ANSWER = re.compile(r"<details><summary>Answer</summary>\n(.+?)\n</details>", re.DOTALL)
KERNEL_ENV = {"JAX_PLATFORMS": "cpu", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def _cells(kind: str) -> list[str]:
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == kind]


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


def test_the_notebook_is_stored_without_outputs():
    # Diff-friendly: outputs are made by running it, not kept in the repository.
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code and all(not cell["outputs"] and cell["execution_count"] is None for cell in code)


@pytest.mark.slow
def test_the_notebook_runs_without_errors(tmp_path):
    try:
        import nbformat
        from ipykernel.kernelspec import write_kernel_spec
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager
        from nbclient import NotebookClient
    except ImportError as error:  # a failure, not a skip: the dev extra lists them
        pytest.fail(f"running docs/backprop.ipynb needs nbclient, nbformat and ipykernel "
                    f"(pip install -e '.[dev]'): {error}")

    kernels = tmp_path / "kernels"
    write_kernel_spec(kernels / "python3", overrides={"env": KERNEL_ENV})
    spec = json.loads((kernels / "python3" / "kernel.json").read_text(encoding="utf-8"))
    assert spec["argv"][0] == sys.executable
    manager = KernelManager(kernel_name="python3",
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # One more cell, run after the notebook's own: which Python the kernel was.
    notebook.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    client = NotebookClient(notebook, km=manager, kernel_name="python3", timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    start = time.perf_counter()
    try:
        client.execute()  # raises CellExecutionError, naming the cell, on any error
    finally:  # nbclient shuts down only the kernels it started itself
        if manager.has_kernel:
            manager.shutdown_kernel(now=True)
    elapsed = time.perf_counter() - start
    print(f"docs/backprop.ipynb ran in {elapsed:.1f} s")

    *cells, interpreter = notebook.cells
    assert interpreter.outputs[0]["text"].strip() == sys.executable
    errors = [output for cell in cells if cell.cell_type == "code" for output in cell.outputs
              if output.output_type == "error"]
    assert not errors, errors
    shown = {kind for cell in cells if cell.cell_type == "code" for output in cell.outputs
             for kind in output.get("data", {})}
    assert {"image/png", "image/svg+xml"} <= shown  # the loss curves and the network's picture
