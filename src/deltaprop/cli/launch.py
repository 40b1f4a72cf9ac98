"""What a command checks before Hydra starts, then the start: its own --help, an experiment that
belongs to another command, a Hydra plugin or a JAX backend that is not installed (each named
with the extra to install). None of this imports JAX.

    launch(task, COMMANDS["train"], config_path)      sys.argv as the command line
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

from deltaprop.errors import EXIT_BAD_INPUT
from deltaprop.run.config import Command, experiment_owner

PACKAGED_CONF = "pkg://deltaprop.conf"
# Hydra's own long options: never translated (`--config-name=x` stays a flag).
HYDRA_FLAGS = {
    "--help", "--hydra-help", "--version", "--cfg", "--package", "--resolve", "--info",
    "--config-path", "--config-dir", "--config-name", "--experimental-rerun", "--multirun",
    "--shell-completion",
}
# A choice on the command line -> (the module it needs, the extra that installs it)
PLUGINS = {
    "hydra/launcher=local": ("hydra_plugins.hydra_submitit_launcher", "cluster"),
    "hydra/launcher=slurm": ("hydra_plugins.hydra_submitit_launcher", "cluster"),
    "hparams_search=optuna": ("hydra_plugins.hydra_optuna_sweeper", "cluster"),
}
# JAX_PLATFORMS names -> (the plugin module, the extra)
BACKENDS = {
    "cuda": (("jax_cuda12_plugin", "jax_cuda13_plugin"), "cuda12]' or 'deltaprop[cuda13"),
    "gpu": (("jax_cuda12_plugin", "jax_cuda13_plugin"), "cuda12]' or 'deltaprop[cuda13"),
    "tpu": (("libtpu",), "tpu"),
}


def hydra_overrides(argv: list[str]) -> list[str]:
    """`--optimizer.lr=0.1` (a W&B sweep agent's `${args}`) -> `optimizer.lr=0.1`; Hydra's flags
    and every other argument as they are."""

    def translated(arg: str) -> str:
        if arg.startswith("--") and "=" in arg and arg.split("=", 1)[0] not in HYDRA_FLAGS:
            return arg[2:]
        return arg

    return [translated(arg) for arg in argv]


def conf_dir(config_path: str) -> Path:
    """The folder of the configs: a checkout's conf/, or the installed package's."""
    if config_path.startswith("pkg://"):
        spec = importlib.util.find_spec(config_path.removeprefix("pkg://"))
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(config_path)


def refusal(command: Command, overrides: list[str], conf: Path) -> str | None:
    """Why this command line cannot run, in one line, or None."""
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key == "experiment" and value:
            owner = experiment_owner(conf / "experiment" / f"{value}.yaml")
            if owner is not None and owner is not command:
                return (f"experiment={value} belongs to {owner.script}, not {command.script}: "
                        f"run `{owner.script} experiment={value}`")
        needed = PLUGINS.get(override)
        if needed and not installed(needed[0]):
            return (f"{override} needs a Hydra plugin that is not installed: "
                    f"pip install 'deltaprop[{needed[1]}]'")
    for platform in os.environ.get("JAX_PLATFORMS", "").lower().split(","):
        modules, extra = BACKENDS.get(platform.strip(), ((), ""))
        if modules and not any(installed(module) for module in modules):
            return (f"JAX_PLATFORMS={os.environ['JAX_PLATFORMS']}, but JAX's {platform} backend "
                    f"is not installed: pip install 'deltaprop[{extra}]'")
    return None


def installed(module: str) -> bool:
    """Whether `module` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def launch(task: Callable, command: Command, config_path: str) -> None:
    """Check the command line (help, refusals: one line, exit 2), then run Hydra's app."""
    argv = hydra_overrides(sys.argv[1:])
    conf = conf_dir(config_path)
    if command.name == "train" and "--wandb-sweep-file" in argv:
        print(conf / "wandb_sweep.yaml")  # `wandb sweep "$(deltaprop-train --wandb-sweep-file)"`
        sys.exit(0)
    if any(arg in ("--help", "-h") for arg in argv):
        from deltaprop.cli.help import command_help

        print(command_help(command, conf))
        sys.exit(0)
    problem = refusal(command, argv, conf)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    named = any(arg.startswith("hydra.job.name=") for arg in argv)
    sys.argv[1:] = argv + ([] if named else [f"hydra.job.name={command.name}"])
    from deltaprop.io.xla_cache import enable_compilation_cache

    enable_compilation_cache()
    import hydra

    started = []

    @functools.wraps(task)  # Hydra finds the task's module through __wrapped__
    def job(cfg):
        started.append(True)
        return task(cfg)

    try:
        hydra.main(version_base="1.3", config_path=config_path, config_name=command.config)(job)()
    except SystemExit as exit:
        # Hydra exits 1 after saying what is wrong; before any job began, that was the command
        # line (an unknown key, a value of the wrong type, a missing option): bad input, 2.
        if exit.code == 1 and not started:
            sys.exit(EXIT_BAD_INPUT)
        raise
