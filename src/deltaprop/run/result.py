"""What `train(cfg)` returns: the run, not only its numbers.

    result = deltaprop.train(cfg)
    result["val/best_loss"]            # the metrics, as a mapping (a sweep: its best point's means)
    result.histories[m]                # member m's evaluations, epoch 0 (initialization) first
    result.initial_params[m]           # where member m started, and where it ended:
    result.final_params[m]
    result.members[m], result.diverged[m], result.run_dir
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deltaprop.network import Params
from deltaprop.population import Member


@dataclass(frozen=True)
class RunResult(Mapping):
    """A finished run: its metrics (this object is a mapping over them) and every member's
    history and parameters, host arrays, member m at index m."""

    metrics: dict[str, Any]
    members: tuple[Member, ...]
    histories: tuple[tuple[dict[str, float], ...], ...]
    initial_params: tuple[Params, ...]
    final_params: tuple[Params, ...]  # a diverged member's: the state it was frozen at
    diverged: tuple[bool, ...]
    run_dir: Path

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)
