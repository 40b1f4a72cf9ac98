"""Choices: each config choice is an Enum owned by the module that implements it.

A `Choice` is a str, so `Init.xavier == "xavier"` and it prints as its value; the structured
configs (io/config.py) type their fields with these Enums, so Hydra rejects a misspelled
choice at compose time and lists the valid ones (`trainer.grad=autodif`).
"""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """An Enum whose members are their (lower-case) names as strings."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)
