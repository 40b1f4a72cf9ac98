"""Each page's commands run: every command in the ```bash blocks of README.md and docs/*.md.

A deltaprop command (`python experiments/<x>.py ...` or `deltaprop-<x> ...`) runs in this
process (conftest.run_command: the same Hydra app, checks and exit codes), in a folder of its own
(relative paths land there, never in the checkout), at a small size (SMALL_RUN: few examples, two
epochs of two minibatches, no W&B, no figures), and must exit as its page says: 0, or the code its
comment names (`# exits 4`). What a command reads (a trained run, a sweep, checkpoints, the blocks
of a grid, CSV files) is made once per module and copied into its folder; placeholders in the
pages (`<run_dir>`, `<sweep_dir>`) name those copies. Every other command (pip, wandb, SLURM,
several hosts or devices, a server) is in NOT_RUN with the reason it does not run here, and that
table holds exactly those: a command added to a page is run or listed, never skipped silently.

Every relative link of these pages, and every #anchor, points to a file and a heading that exist.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_in_process

PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
LINKED = (*PAGES, ROOT / "BENCHMARKS.md")  # the pages whose links are checked
FENCE = re.compile(r"^([ \t]*)```bash\n(.*?)^\1```[ \t]*$", re.MULTILINE | re.DOTALL)
# The functions of deltaprop.cli behind each command name (deltaprop-eval: cli.evaluate).
CLI = {"train": "train", "eval": "evaluate", "predict": "predict", "gradcheck": "gradcheck",
       "worked_example": "worked_example", "speed_of_learning": "speed_of_learning",
       "learning_slowdown": "learning_slowdown", "vanishing_gradients": "vanishing_gradients",
       "gather": "gather"}
# Appended to each command that trains or measures, so that the whole file takes seconds.
SMALL_TRAINING = ("logger=none", "logger.plots=false", "trainer.progress=false",
                  "dataset.n_samples=120", "trainer.epochs=2", "trainer.limit_batches=2")
SMALL_RUN = {
    "train": SMALL_TRAINING,
    "gradcheck": ("dataset.n_samples=120", "trainer.limit_batches=2"),
    "worked_example": ("worked_example.page_steps=3",),
    "speed_of_learning": ("speed_of_learning.n_images=40", "speed_of_learning.seeds=1"),
    "learning_slowdown": (),
    "vanishing_gradients": (*SMALL_TRAINING, "trainer.epochs=1", "vanishing_gradients.seeds=2"),
    "eval": ("logger=none",),
    "predict": (),
    "gather": (),
}
# Arguments that ask a command about itself: nothing is trained, nothing appended.
QUERIES = ("--help", "--cfg", "-sc", "--wandb-sweep-file")

# Commands of the pages that are not run here, and why.
NOT_RUN = {
    "pip install -e '.[dev]'": "installs the project: the test environment is that install",
    "pip install -e .": "installs the project: the test environment is that install",
    "python -m pytest -q": "the suite itself",
    'python -m pytest -q -m "not slow"': "the suite itself",
    "python -m pytest -n 0 -q tests/test_manual.py": "this file",
    "python -m pytest tests/test_playground_session.py tests/test_playground_server.py -q":
        "the suite itself",
    "python -m pytest tests/test_playground_browser.py -q": "the suite itself",
    "ruff check src tests experiments": "a linter, run by CI and by hand",
    "deltaprop-playground": "a server that runs until stopped; tests/test_playground_server.py",
    "deltaprop-playground --port 0": "a server that runs until stopped; "
                                     "tests/test_playground_server.py",
    "python -m deltaprop.playground --port 9000": "a server that runs until stopped",
    "wandb sweep \"$(deltaprop-train --wandb-sweep-file)\"":
        "creates a sweep on the W&B server; the inner command runs here, and tests/test_cli.py "
        "runs the command line an agent builds from the file",
    "wandb agent <entity>/<project>/<sweep id>": "runs trials for a sweep on the W&B server",
    "wandb login": "asks for a W&B API key",
    "wandb sync outputs/train/default/<time>/wandb/offline-run-*": "uploads to the W&B server",
    "wandb sync multirun/train/default/<time>/*/wandb/offline-run-*": "uploads to the W&B server",
    "wandb sync multirun/train/<experiment_name>/<time>/*/wandb/offline-run-*":
        "uploads to the W&B server",
    "wandb sync --dry-run multirun/train/<experiment_name>/<time>/*/wandb/offline-run-*":
        "asks the W&B server; tests/test_tracking.py checks the offline runs it would upload",
    "python experiments/train.py logger.mode=online":
        "reaches the W&B server with the user's key; tests/test_tracking.py runs both online "
        "modes against a local server",
    "python experiments/train.py logger.mode=online_only":
        "reaches the W&B server with the user's key; tests/test_tracking.py",
    'eval "$(deltaprop-train -sc install=bash)"':
        "changes the shell; the inner command runs here",
    "python experiments/train.py -m hydra/launcher=local seed=0,1,2,3":
        "one process per job; tests/test_launchers.py runs the local launcher",
    "python experiments/train.py -m hydra/launcher=local seed=0,1":
        "one process per job; tests/test_launchers.py runs exactly this",
    "python experiments/train.py -m hydra/launcher=slurm hydra.launcher.partition=gpu "
    "seed=0,1,2,3 optimizer.lr=0.1,1.0": "needs SLURM; tests/test_launchers.py checks the "
                                         "sbatch script",
    "python experiments/train.py -m hydra/launcher=slurm hydra.launcher.nodes=2 "
    "hydra.launcher.gpus_per_node=4 hydra.launcher.tasks_per_node=4 trainer.distributed=true "
    "trainer.data_parallel=true trainer.batch_size=512": "needs SLURM and two GPU nodes",
    "python experiments/train.py -m hydra/launcher=slurm trainer.num_seeds=64 "
    "'sweep.lr=[0.03,0.1,0.3,1.0]' 'sweep.init_scale=[0.5,1,2]' "
    "sweep.block=0/8,1/8,2/8,3/8,4/8,5/8,6/8,7/8":
        "needs SLURM; the same blocks run here on one machine (docs/sweeps.md)",
    "python experiments/train.py -m hparams_search=optuna hydra/launcher=slurm "
    "hydra.sweeper.n_jobs=10": "needs SLURM",
    "XLA_FLAGS=--xla_force_host_platform_device_count=4 python experiments/train.py "
    "trainer.data_parallel=true":
        "the device count is fixed when JAX starts; tests/test_parallel.py runs this on four "
        "forced CPU devices",
    "srun --nodes=2 --ntasks-per-node=4 --gpus-per-node=4 python experiments/train.py "
    "trainer.distributed=true trainer.data_parallel=true trainer.batch_size=512 "
    "hydra.run.dir=outputs/dp/$SLURM_JOB_ID": "needs SLURM and two GPU nodes",
    "JAX_COORDINATOR_ADDRESS=10.0.0.1:1234 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 "
    "python experiments/train.py trainer.distributed=true trainer.data_parallel=true":
        "needs a second host; tests/test_parallel.py runs two processes on localhost",
    "JAX_COORDINATOR_ADDRESS=10.0.0.1:1234 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=1 "
    "python experiments/train.py trainer.distributed=true trainer.data_parallel=true":
        "needs a second host; tests/test_parallel.py runs two processes on localhost",
    "cp outputs/learning_slowdown/learning_slowdown.png docs/learning_slowdown.png":
        "copies a figure into the checkout",
    "cp outputs/worked_example_by_hand/network.svg docs/network.svg":
        "copies a figure into the checkout; tests/test_docs.py compares docs/network.svg "
        "with what the code draws",
    "chromium --headless --no-sandbox --disable-gpu --no-first-run "
    "--disable-background-networking --disable-component-update --disable-sync "
    "--user-data-dir=\"$(mktemp -d)\" --window-size=1000,1300 --virtual-time-budget=2000 "
    "--screenshot=docs/backprop_page.png "
    "\"file://$PWD/outputs/worked_example_by_hand/backprop.html#step=3&phase=backward&layer=3\"":
        "a screenshot into the checkout; tests/test_page.py drives the page in Chromium",
    "mktemp -d": "a shell helper inside the screenshot command",
}
# What a command's placeholder or relative folder stands for: made once (PREPARED), copied in.
PLACEHOLDERS = {"<run_dir>": "run", "<sweep_dir>": "sweep"}
FOLDERS = {"outputs/long": "long", "outputs/grid": "grid"}


@dataclass(frozen=True)
class Command:
    """One command of a page: its text (continuation lines joined, comment removed), the
    comment, and where it is."""

    page: str
    line: int
    text: str
    comment: str

    @property
    def words(self) -> list[str]:
        return shlex.split(self.text)

    @property
    def program(self) -> str | None:
        """deltaprop's command name (`train`, `eval`, ...), or None for anything else."""
        words = self.words
        if words[0] == "python" and len(words) > 1 and words[1].startswith("experiments/"):
            name = Path(words[1]).stem
        elif words[0].startswith("deltaprop-"):
            name = words[0].removeprefix("deltaprop-").replace("-", "_")
        else:
            return None
        return name if name in CLI else None

    @property
    def arguments(self) -> list[str]:
        words = self.words
        return words[2:] if words[0] == "python" else words[1:]

    @property
    def exit_code(self) -> int:
        """0, or the code its comment documents (`# exits 4`)."""
        documented = re.search(r"\bexits (\d+)", self.comment)
        return int(documented.group(1)) if documented else 0

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def split_comment(line: str) -> tuple[str, str]:
    """(command, comment): a `#` after white space and outside quotes starts the comment."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].strip(), line[index + 1:].strip()
    return line.strip(), ""


def substitutions(text: str) -> list[str]:
    """The commands inside `$(...)` of `text`."""
    return re.findall(r"\$\(([^()]+)\)", text)


def commands_of(page: Path) -> list[Command]:
    """Every command of the page's bash blocks: `a && b` is two, `$(c)` inside one is one more."""
    source = page.read_text(encoding="utf-8")
    name = page.relative_to(ROOT).as_posix()
    found = []
    for block in FENCE.finditer(source):
        first = source.count("\n", 0, block.start(2)) + 1
        lines = block.group(2).splitlines()
        index = 0
        while index < len(lines):
            start, text = index, lines[index].strip()
            while text.endswith("\\") and index + 1 < len(lines):
                index += 1
                text = text[:-1].rstrip() + " " + lines[index].strip()
            index += 1
            text, comment = split_comment(text)
            for part in filter(None, (piece.strip() for piece in text.split(" && "))):
                for each in (part, *substitutions(part)):
                    found.append(Command(name, first + start, " ".join(each.split()), comment))
    return found


COMMANDS = [command for page in PAGES for command in commands_of(page)]
# Each deltaprop command once (the first page that shows it), unless NOT_RUN says why not.
RUNNABLE = list({command.text: command for command in reversed(COMMANDS)
                 if command.program is not None and command.text not in NOT_RUN}.values())[::-1]


def test_every_command_is_run_or_says_why_not():
    run = {command.text for command in RUNNABLE}
    others = {command.text for command in COMMANDS if command.text not in run}
    assert set(NOT_RUN) == others, (
        f"not run and not listed: {sorted(others - set(NOT_RUN))}; "
        f"listed but on no page: {sorted(set(NOT_RUN) - others)}")
    assert len(RUNNABLE) >= 40
    pages = {command.page for command in RUNNABLE}
    assert {"README.md", "docs/training.md", "docs/sweeps.md", "docs/checkpoints.md",
            "docs/predict.md", "docs/backprop.md"} <= pages


def test_the_parser_reads_what_a_shell_would():
    page = ROOT / "docs" / "training.md"
    (training,) = [command for command in commands_of(page) if "debug=nans" in command.text]
    assert training.text == "python experiments/train.py debug=nans optimizer.lr=1e38"
    assert training.exit_code == 3 and training.program == "train"
    quick = [command.text for command in commands_of(ROOT / "README.md")][:3]
    assert quick == ["pip install -e '.[dev]'", "python experiments/train.py",
                     "python -m pytest -q"]
    assert split_comment("a 'b # c' # d") == ("a 'b # c'", "d")
    assert substitutions('wandb sweep "$(deltaprop-train --wandb-sweep-file)"') == [
        "deltaprop-train --wandb-sweep-file"]
    joined = [command for command in commands_of(ROOT / "docs" / "sweeps.md")
              if "sweep.momentum" in command.text]
    assert joined and joined[0].text.endswith("'sweep.init_scale=[0.5,1,2]'")


# --------------------------------------------------------------------- what the commands read


def write_csv_files(folder: Path) -> None:
    """data.csv (x1, x2 and the 0/1 columns target, a, b, c), new.csv (moons' features x1, x2)
    and labelled.csv (x1, x2, label): the files the pages name."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 2))
    labels = (rng.random((120, 4)) < 0.5).astype(int)
    labels[:, 0] = x[:, 0] > 0
    rows = [f"{a:.6f},{b:.6f}" for a, b in x]
    (folder / "data.csv").write_text("x1,x2,target,a,b,c\n" + "".join(
        f"{row},{','.join(map(str, label))}\n" for row, label in zip(rows, labels, strict=True)))
    (folder / "new.csv").write_text("x1,x2\n" + "".join(f"{row}\n" for row in rows[:10]))
    (folder / "labelled.csv").write_text("x1,x2,label\n" + "".join(
        f"{row},{label[0]}\n" for row, label in zip(rows[:20], labels, strict=False)))


# Each thing a page's command reads, trained as the page's own commands would make it: a run,
# a sweep of four members, a checkpointed run (one epoch: a resume goes on to two), the two
# blocks of a grid.
PREPARED = {
    "run": ("train", ("run_dir={path}", *SMALL_TRAINING)),
    "sweep": ("train", ("run_dir={path}", "trainer.num_seeds=4", *SMALL_TRAINING)),
    "long": ("train", ("run_dir={path}", "trainer.checkpoint_every=10", *SMALL_TRAINING,
                       "trainer.epochs=1")),
    "grid": ("train", ("-m", "trainer.num_seeds=4", "sweep.lr=[0.1,1.0]",
                       "sweep.block=0/2,1/2", "run_dir={path}", *SMALL_TRAINING)),
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """name -> the folder of PREPARED[name], trained on first use."""
    base = tmp_path_factory.mktemp("prepared")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            command, arguments = PREPARED[name]
            path = base / name
            result = run_in_process(command, *(a.format(path=path) for a in arguments), cwd=base)
            assert result.returncode == 0, (name, result.stderr[-3000:])
            made[name] = path
        return made[name]

    return get


def prepare(command: Command, folder: Path, prepared) -> list[str]:
    """The command's arguments with its placeholders replaced, what it reads copied into
    `folder`, and SMALL_RUN appended (unless it only asks about itself)."""
    write_csv_files(folder)
    arguments = []
    for argument in command.arguments:
        for placeholder, name in PLACEHOLDERS.items():
            if placeholder in argument:
                copy = folder / name
                if not copy.exists():
                    shutil.copytree(prepared(name), copy)
                argument = argument.replace(placeholder, str(copy))
        arguments.append(argument)
    unknown = re.findall(r"<[^<>]+>", " ".join(arguments))
    assert not unknown, f"{command}: a placeholder without a meaning here: {unknown}"
    resumes = any(argument.startswith("trainer.resume=") for argument in arguments)
    for relative, name in FOLDERS.items():
        written = f"run_dir={relative}" in arguments and not resumes
        if relative in command.text and not written:
            shutil.copytree(prepared(name), folder / relative)
    if any(argument.split("=")[0] in QUERIES for argument in arguments):
        return arguments
    search = ["hydra.sweeper.n_trials=2"] if "hparams_search=optuna" in arguments else []
    return [*arguments, *SMALL_RUN[command.program], *search]


def run_gather(arguments: list[str], folder: Path, monkeypatch) -> int:
    import deltaprop.cli

    monkeypatch.chdir(folder)
    with pytest.raises(SystemExit) as exit:
        deltaprop.cli.gather(arguments)
    return exit.value.code


@pytest.mark.slow
@pytest.mark.parametrize("command", RUNNABLE, ids=str)
def test_the_command_runs_as_its_page_says(command, prepared, run_command, tmp_path,
                                          monkeypatch):
    arguments = prepare(command, tmp_path, prepared)
    if command.program == "gather":
        code, stdout, stderr = run_gather(arguments, tmp_path, monkeypatch), "", ""
    else:
        result = run_command(CLI[command.program], *arguments, cwd=tmp_path)
        code, stdout, stderr = result.returncode, result.stdout, result.stderr
    assert code == command.exit_code, f"{command}\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, f"{command}\n{stderr[-3000:]}"
    if code in (2, 3):  # bad input, divergence: one line naming it
        assert stderr.strip().splitlines()[-1].startswith("error: "), stderr[-2000:]
    if code == 4:  # a failed check: the table says which rows
        assert "FAIL" in stdout, stdout[-2000:]


# --------------------------------------------------------------------------------- the links

LINK = re.compile(r"\]\(([^()\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchor of every heading: lower case, punctuation dropped, spaces as dashes."""
    headings = re.findall(r"^#{1,6} (.+)$", page.read_text(encoding="utf-8"), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in headings}


@pytest.mark.parametrize("page", LINKED, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_link_points_to_a_file_and_heading_that_exist(page):
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        missing_heading = anchor and linked.suffix == ".md" and linked.exists() and (
            anchor not in anchors(linked))
        if not linked.exists() or missing_heading:
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


def test_anchors_are_githubs():
    assert anchors(ROOT / "docs" / "backprop.md") >= {
        "why-δ-shrinks-going-back-vanishing-gradients", "a-calculator-sized-example-by-hand"}
    assert "wb-sweeps" in anchors(ROOT / "docs" / "sweeps.md")
