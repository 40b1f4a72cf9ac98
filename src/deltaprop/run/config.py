"""The Hydra side of the settings: the schema Hydra checks, and the one place a composed
DictConfig becomes plain values.

    register_schema()          Hydra's ConfigStore gets `config_schema`: mutable copies of the
                               frozen classes in settings.py (Hydra merges into them), so an
                               unknown key, a wrong type or a misspelled choice fails at compose
    read(cfg)                  DictConfig -> frozen settings.Config, checked (settings.check)
    compose(*overrides)        the config `python experiments/train.py <overrides>` runs

Imports no JAX: reading a config (a command's --help, tab completion) stays fast.
"""

from __future__ import annotations

import dataclasses
import typing
from enum import Enum
from functools import cache
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from deltaprop import settings as settings_module
from deltaprop.errors import ConfigError
from deltaprop.settings import Config, check

SCHEMA_NAME = "config_schema"


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


def register_schema() -> None:
    """Store the schema in Hydra's ConfigStore (idempotent)."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=mutable_schema(Config))


register_schema()


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


def read(cfg: DictConfig | Config) -> Config:
    """The composed config as frozen, checked settings: the one reading of a DictConfig.

    A `hydra` node (compose(..., return_hydra_config=True)) is left out, not resolved.

    Raises:
      ConfigError: an unknown key (added with '+'), or a value out of range (settings.check).
    """
    if isinstance(cfg, Config):
        settings = cfg
    else:
        keys = [key for key in cfg if key != "hydra"]
        data = OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)
        settings = _frozen(Config, data)
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
