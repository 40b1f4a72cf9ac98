"""A command's --help: its config groups and their options, and every key with its default and
one line saying what it is (the comment beside the field in settings.py). No JAX is imported.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from deltaprop.run.config import Command, experiment_owner

_COMMENT = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+)$")


def field_comments(cls: type) -> dict[str, str]:
    """{field: the comment on its line} of a settings dataclass (and the classes it extends)."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            for line in inspect.getsource(klass).splitlines():
                match = _COMMENT.match(line)
                if match:
                    comments[match.group(1)] = match.group(2).strip()
    return comments


def keys_of(cls: type, prefix: str = "") -> list[tuple[str, str]]:
    """[(dotted key, what it is)] of every leaf of a settings class, in declaration order: the
    comment beside the field, and a choice's options."""
    hints, comments = typing.get_type_hints(cls), field_comments(cls)
    keys = []
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        inner = [arg for arg in typing.get_args(kind) if arg is not type(None)] or [kind]
        if dataclasses.is_dataclass(inner[0]):
            keys += keys_of(inner[0], f"{prefix}{field.name}.")
            continue
        text = comments.get(field.name, "")
        if isinstance(inner[0], type) and issubclass(inner[0], Enum):
            options = " | ".join(inner[0].values())
            text = options if not text else text if options in text else f"{options}: {text}"
        keys.append((f"{prefix}{field.name}", text))
    return keys


def _composed(command: Command, conf: Path) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf.resolve()), version_base="1.3"):
        cfg = compose(command.config)
    return OmegaConf.to_container(cfg, resolve=False)


def _value(config: dict[str, Any], key: str) -> str:
    for part in key.split("."):
        if not isinstance(config, dict) or part not in config:
            return ""
        config = config[part]
    return "null" if config is None else str(getattr(config, "value", config))


def command_help(command: Command, conf: Path) -> str:
    """The text of `<command> --help`."""
    header = [line.lstrip("# ").rstrip() for line in
              (conf / f"{command.config}.yaml").read_text().splitlines()
              if line.startswith("#")]
    defaults = OmegaConf.load(conf / f"{command.config}.yaml").get("defaults", [])
    lines = [*header, "", (f"usage: {command.script} [key=value ...] [group=option ...] "
             "[-m key=a,b ...]"), "", "groups (group=option; the default in brackets):"]
    for entry in defaults:
        if isinstance(entry, dict) or OmegaConf.is_dict(entry):
            (group, chosen), = dict(entry).items()
            group = group.removeprefix("optional ").strip()
            options = sorted(path.stem for path in (conf / group).glob("*.yaml")
                             if group != "experiment" or experiment_owner(path) in (None, command))
            lines.append(f"  {group:<16} {', '.join(options)} [{chosen or 'none'}]")
    composed = _composed(command, conf)
    lines += ["", "keys (key=value; the default, then what it is):"]
    for key, comment in keys_of(command.settings):
        value = _value(composed, key)
        lines.append(f"  {key:<34} {value:<14} {comment}".rstrip())
    lines += ["", ("Hydra's own options: --hydra-help. Tab completion: "
              f"eval \"$({command.script} -sc install=bash)\"")]
    return "\n".join(lines)
