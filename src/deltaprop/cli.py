"""The console commands: thin Hydra apps on the packaged configs (`deltaprop.conf`, the project's
conf/), installed by `pip install .` and called by experiments/*.py.

    deltaprop-train            python experiments/train.py            train a run or a sweep
    deltaprop-gradcheck        python experiments/gradcheck.py        manual_grad vs jax.grad and FD
    deltaprop-worked-example   python experiments/worked_example.py   every number of one step
    deltaprop-predict          python experiments/predict.py          a trained model on new data

Exit codes (deltaprop.errors): 0 done, 2 bad input, 3 every member diverged, 4 a gradient check
failed, 130 interrupted. Each command also accepts the `--key=value` form a W&B sweep agent
passes (`${args}`): it becomes Hydra's `key=value`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from deltaprop.errors import (
    EXIT_BAD_INPUT,
    EXIT_DIVERGED,
    EXIT_GRADCHECK_FAILED,
    EXIT_INTERRUPTED,
    InputError,
)
from deltaprop.io import config as config_schema
from deltaprop.io.xla_cache import enable_compilation_cache

log = logging.getLogger(__name__)
PACKAGED_CONF = "pkg://deltaprop.conf"
# Hydra's own long options: never translated (`--config-name=x` stays a flag).
HYDRA_FLAGS = {
    "--help", "--hydra-help", "--version", "--cfg", "--package", "--resolve", "--info",
    "--config-path", "--config-name", "--config-dir", "--experimental-rerun", "--multirun",
    "--shell-completion",
}


def hydra_overrides(argv: list[str]) -> list[str]:
    """`--optimizer.lr=0.1` (a W&B sweep agent's `${args}`) -> `optimizer.lr=0.1`; Hydra's flags
    and every other argument as they are."""

    def translated(arg: str) -> str:
        if arg.startswith("--") and "=" in arg and arg.split("=", 1)[0] not in HYDRA_FLAGS:
            return arg[2:]
        return arg

    return [translated(arg) for arg in argv]


def hydra_app(task: Callable[[DictConfig], object], job_name: str, config_name: str = "config"):
    """A console command running `task(cfg)` as Hydra's app `job_name` (its log file is
    `<run dir>/<job_name>.log`); `config_path` lets experiments/*.py use a checkout's conf/."""

    def command(config_path: str = PACKAGED_CONF) -> None:
        named = any(arg.startswith("hydra.job.name=") for arg in sys.argv[1:])
        sys.argv[1:] = hydra_overrides(sys.argv[1:]) + ([] if named else
                                                         [f"hydra.job.name={job_name}"])
        enable_compilation_cache()
        hydra.main(version_base="1.3", config_path=config_path, config_name=config_name)(task)()

    return command


def fail(error: BaseException | str, code: int) -> None:
    """One line on stderr, the exit code; no traceback."""
    print(f"error: {error}", file=sys.stderr)
    sys.exit(code)


# ------------------------------------------------------------------ deltaprop-train


def _train(cfg: DictConfig) -> float:
    from deltaprop.nan_guard import TrainingDiverged
    from deltaprop.run.train import train

    try:
        metrics = train(cfg)
    except (InputError, TrainingDiverged) as error:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            log.error(f"error: {error}")  # the console and the job's train.log
            raise  # Hydra marks this job failed; a search goes on (conf/hparams_search/)
        fail(error, EXIT_BAD_INPUT if isinstance(error, InputError) else EXIT_DIVERGED)
    except KeyboardInterrupt as error:
        print(f"{error or 'interrupted'}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    return metrics[cfg.objective]


train = hydra_app(_train, "train")


# ------------------------------------------------------------------ deltaprop-gradcheck


def _gradcheck(cfg: DictConfig) -> None:
    from deltaprop.run.setup import gradcheck_from_config

    try:
        config_schema.validate_config(cfg)
        report = gradcheck_from_config(cfg)
    except InputError as error:
        fail(error, EXIT_BAD_INPUT)
    log.info(report.format_table())  # the console and gradcheck.log
    if not report.passed:
        sys.exit(EXIT_GRADCHECK_FAILED)


gradcheck = hydra_app(_gradcheck, "gradcheck")


# ------------------------------------------------------------------ deltaprop-worked-example

WORKED_EXAMPLE_APP = "worked_example_app"
BY_HAND_EXPERIMENT = "worked_example_by_hand"
ConfigStore.instance().store(
    name=WORKED_EXAMPLE_APP,
    node={"defaults": ["config", {"override experiment": "worked_example"}, "_self_"]},
)


def with_by_hand_experiment(cfg: DictConfig) -> DictConfig:
    """mode=by_hand and no experiment= on the command line: compose again with the by-hand
    experiment, keeping the command line's overrides (they win over the experiment's values)."""
    from hydra import compose

    overrides = list(HydraConfig.get().overrides.task)
    named = any(o.lstrip("+~").startswith("experiment=") for o in overrides)
    if cfg.worked_example.mode != "by_hand" or named:
        return cfg
    return compose(config_name=WORKED_EXAMPLE_APP,
                   overrides=[f"experiment={BY_HAND_EXPERIMENT}", *overrides])


def _data_source(cfg: DictConfig) -> str:
    if cfg.dataset.name == "xor_table":
        return "the XOR truth table, as it is"
    return f"the first standardized training examples of dataset={cfg.dataset.name}"


def _worked_example(cfg: DictConfig) -> None:
    from deltaprop.run.setup import worked_example_inputs
    from deltaprop.teaching.history import training_history
    from deltaprop.teaching.page import format_page
    from deltaprop.teaching.render import format_console, format_markdown
    from deltaprop.teaching.svg import format_svg, picture_of_example
    from deltaprop.teaching.worked_example import worked_example

    try:
        cfg = with_by_hand_experiment(cfg)
        config_schema.validate_config(cfg)
        if str(cfg.loss) != "bce" or str(cfg.model.activation) != "sigmoid":
            raise config_schema.ConfigError(
                f"the worked example shows sigmoid layers and BCE (δ_L = a_L − y), not "
                f"loss={cfg.loss} model.activation={cfg.model.activation}"
            )
        options = cfg.worked_example
        params, x, y = worked_example_inputs(cfg, options.batch)
    except InputError as error:  # ConfigError, DataError, a bad batch: found before any work
        fail(error, EXIT_BAD_INPUT)
    by_hand, digits, source = options.mode == "by_hand", options.digits, _data_source(cfg)
    example = worked_example(params, x, y, cfg.optimizer.lr, data=source)
    log.info(format_console(example, digits, by_hand=by_hand))  # console, worked_example.log
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    outputs = [  # (what, file name, text)
        ("report", "worked_example.md",
         format_markdown(example, digits, by_hand, picture="network.svg")),
        ("picture", "network.svg", format_svg(picture_of_example(example), digits)),
    ]
    passed = example.passed
    if options.page:
        history = training_history(params, x, y, cfg.optimizer.lr, options.page_steps)
        outputs.append(("page", "backprop.html", format_page(history, digits, source)))
        passed = passed and history.passed
    log.info("")
    for what, name, text in outputs:
        (run_dir / name).write_text(text, encoding="utf-8")
        log.info(f"{what}: {run_dir / name}")
    if not passed:
        sys.exit(EXIT_GRADCHECK_FAILED)


worked_example = hydra_app(_worked_example, "worked_example", config_name=WORKED_EXAMPLE_APP)


# ------------------------------------------------------------------ deltaprop-predict


def _predict(cfg: DictConfig) -> None:
    from deltaprop.run.predict import predict_from_config

    try:
        predict_from_config(cfg)
    except InputError as error:
        fail(error, EXIT_BAD_INPUT)


predict = hydra_app(_predict, "predict")


def gather(argv: list[str] | None = None) -> None:
    """deltaprop-gather: join the blocks of a sweep (sweep.block=i/n) into one sweep's tables."""
    from deltaprop.run.gather import main

    sys.exit(main(argv))
