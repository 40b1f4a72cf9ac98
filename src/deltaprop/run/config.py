"""The Hydra side of the settings: the schemas Hydra checks, and the one place a composed
DictConfig becomes plain values.

    COMMANDS                   each command's primary config (conf/<name>.yaml) and settings
    register_schemas()         Hydra's ConfigStore gets `<command>_schema` for each: mutable
                               copies of the frozen classes in settings.py (Hydra merges into
                               them), so an unknown key, a wrong type or a misspelled choice
                               fails at compose time
    read(cfg, TrainSettings)   DictConfig -> frozen settings, checked (settings.check)
    compose(*overrides)        the config `python experiments/train.py <overrides>` runs

Imports no JAX: reading a config (a command's --help, tab completion) stays fast.
"""

from __future__ import annotations

import dataclasses
import typing
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from deltaprop import settings as settings_module
from deltaprop.errors import ConfigError
from deltaprop.settings import (
    EvalSettings,
    GradcheckSettings,
    LearningSlowdownSettings,
    PredictSettings,
    SpeedOfLearningSettings,
    TrainSettings,
    VanishingGradientsSettings,
    WorkedExampleSettings,
    check,
)


@dataclasses.dataclass(frozen=True)
class Command:
    """A console command: its primary config (conf/<config>.yaml), whose defaults list starts
    with `<schema>`, and the settings it reads."""

    name: str  # deltaprop-<name with dashes>, Hydra's job name, outputs/<name>/...
    config: str
    settings: type

    @property
    def schema(self) -> str:
        return f"{self.config}_schema"

    @property
    def script(self) -> str:
        return f"deltaprop-{self.name.replace('_', '-')}"


COMMANDS = {command.name: command for command in (
    Command("train", "config", TrainSettings),
    Command("gradcheck", "gradcheck", GradcheckSettings),
    Command("worked_example", "worked_example", WorkedExampleSettings),
    Command("speed_of_learning", "speed_of_learning", SpeedOfLearningSettings),
    Command("learning_slowdown", "learning_slowdown", LearningSlowdownSettings),
    Command("vanishing_gradients", "vanishing_gradients", VanishingGradientsSettings),
    Command("predict", "predict", PredictSettings),
    Command("eval", "eval", EvalSettings),
)}


def experiment_owner(path: Path) -> Command | None:
    """The command whose own group (gradcheck, worked_example, learning_slowdown, ...) the
    experiment file sets; None when it sets training's keys only (any command may use it)."""
    if not path.is_file():
        return None  # Hydra says so, with the experiments there are
    import yaml

    keys = set(yaml.safe_load(path.read_text()) or {})
    training = {field for field in TrainSettings.__dataclass_fields__}
    for command in COMMANDS.values():
        own = set(command.settings.__dataclass_fields__) - training
        if command.name != "train" and keys & own:
            return command
    return None



def _is_tuple(kind: Any) -> bool:
    return typing.get_origin(kind) is tuple


def _as_list_type(kind: Any) -> Any:
    """tuple[X, ...] -> list[X] (recursively): the form a structured config takes."""
    if _is_tuple(kind):
        return list[_as_list_type(typing.get_args(kind)[0])]
    return kind


def _as_lists(value: Any) -> Any:
    return [_as_lists(item) for item in value] if isinstance(value, tuple) else value


@cache
def mutable_schema(cls: type) -> type:
    """A mutable dataclass with the fields, types and defaults of the frozen `cls`, tuples as
    lists, for Hydra to merge config files and overrides into."""
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        kind = _as_list_type(hints[f.name])
        optional = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(optional) == 1 and dataclasses.is_dataclass(optional[0]):  # a group, or none
            specs.append((f.name, typing.Optional[mutable_schema(optional[0])],  # noqa: UP045
                          dataclasses.field(default=None)))
            continue
        if dataclasses.is_dataclass(kind):
            kind = mutable_schema(kind)
            specs.append((f.name, kind, dataclasses.field(default_factory=kind)))
        elif isinstance(f.default, tuple):
            specs.append((f.name, kind, dataclasses.field(
                default_factory=lambda value=f.default: _as_lists(value))))
        else:
            specs.append((f.name, kind, dataclasses.field(default=f.default)))
    schema = dataclasses.make_dataclass(cls.__name__, specs)
    schema.__module__ = settings_module.__name__
    return schema


def register_schemas() -> None:
    """Store every command's schema in Hydra's ConfigStore, and the resolver its output
    folders use (idempotent)."""
    for command in COMMANDS.values():
        ConfigStore.instance().store(name=command.schema, node=mutable_schema(command.settings))
    if not OmegaConf.has_resolver("deltaprop.or"):
        # ${deltaprop.or:${run_dir},outputs/...}: run_dir when it is set, else the default
        OmegaConf.register_new_resolver("deltaprop.or",
                                        lambda value, default: default if value is None else value)


register_schemas()


def _frozen(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """An instance of the frozen dataclass `cls` from plain `data`, every key known."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [key for key in data if key not in names]
    if unknown:
        raise ConfigError(
            f"{prefix}{unknown[0]} is not a config key (added with '+'?); the keys of "
            f"{prefix.rstrip('.') or 'the config'} are: {', '.join(names)}"
        )
    values = {name: _value(hints[name], data[name], f"{prefix}{name}")
              for name in names if name in data}
    return cls(**values)


def _value(kind: Any, value: Any, key: str) -> Any:
    inner = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):  # X | None
        kind = inner[0]
    if dataclasses.is_dataclass(kind) and isinstance(value, dict):
        return _frozen(kind, value, f"{key}.")
    if _is_tuple(kind) and isinstance(value, (list, tuple)):
        item = typing.get_args(kind)[0]
        return tuple(_value(item, element, key) for element in value)
    if isinstance(kind, type) and issubclass(kind, Enum) and value is not None:
        return kind(value)
    if isinstance(value, list):  # an Any field (dataset.label): hashable, like every value
        return tuple(_value(Any, element, key) for element in value)
    return value


def read(cfg: Any, settings: type = TrainSettings) -> Any:
    """The composed config as frozen, checked `settings` (a command's class in settings.py):
    the one reading of a DictConfig. Settings already read pass through (training's own part
    of a command that trains, for `settings=TrainSettings`).

    A `hydra` node (compose(..., return_hydra_config=True)) is left out, not resolved.

    Raises:
      ConfigError: an unknown key (added with '+'), or a value out of range (settings.check).
    """
    if isinstance(cfg, settings):
        read_settings = cfg.training() if settings is TrainSettings else cfg
    elif dataclasses.is_dataclass(cfg):
        raise ConfigError(f"{type(cfg).__name__} given where {settings.__name__} is read")
    else:
        keys = [key for key in cfg if key != "hydra"]
        data = OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)
        read_settings = _frozen(settings, data)
    check(read_settings)
    return read_settings


def read_saved_config(path: Path) -> TrainSettings:
    """A training run's saved config (<run dir>/.hydra/config.yaml) as its settings. Keys the
    training config does not hold (other commands' groups, which the one config of earlier
    versions carried) are left out, and an earlier logger.name=wandb|none is logger.backend.

    Raises:
      ConfigError: a saved value that is not valid any more (names the key).
    """
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    known = {field.name for field in dataclasses.fields(TrainSettings)}
    data = {key: value for key, value in data.items() if key in known}
    logger = data.get("logger") or {}
    if logger.get("name") in ("wandb", "none") and "backend" not in logger:
        logger["backend"] = logger.pop("name")
    settings = _frozen(TrainSettings, data)
    check(settings)
    return settings


def compose(*overrides: str, config_name: str = "config") -> DictConfig:
    """The config `python experiments/train.py <overrides>` runs, for notebooks and scripts:

        cfg = deltaprop.compose("trainer.epochs=20", "optimizer=adam")
        result = deltaprop.train(cfg)

    Composes the packaged configs (`deltaprop.conf`, the project's conf/) with Hydra."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("deltaprop.conf", version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides))
