"""What a run keeps of itself: each member's history of evaluations, best validation loss, W&B
run id and divergence, saved in every checkpoint and restored on resume.

    record = RunRecord.fresh(n_members)
    rows = record.log(epoch, epoch_losses, columns)     # one row per member still training
    RunRecord.from_json(record.to_json(), n_members)    # what a checkpoint's progress holds
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deltaprop.io.data import Splits
from deltaprop.metrics import member_rows, split_metrics
from deltaprop.nan_guard import Divergence


@dataclass
class MemberRecord:
    """One member's evaluations so far."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_val_loss: float = math.inf
    run_id: str | None = None  # its W&B run, continued on resume
    divergence: Divergence | None = None

    def to_json(self) -> dict[str, Any]:
        divergence = self.divergence and vars(self.divergence)
        return {"history": self.history, "best_val_loss": self.best_val_loss,
                "run_id": self.run_id, "divergence": divergence}

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> MemberRecord:
        divergence = saved["divergence"] and Divergence(**saved["divergence"])
        return cls(list(saved["history"]), float(saved["best_val_loss"]), saved["run_id"],
                   divergence)


@dataclass
class RunRecord:
    """Every member's record, the sweep's W&B group and summary run, and the settings changed
    on earlier resumes."""

    members: list[MemberRecord]
    group: str | None = None
    summary_run_id: str | None = None
    resume_changes: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def fresh(cls, n_members: int) -> RunRecord:
        return cls([MemberRecord() for _ in range(n_members)])

    def to_json(self) -> dict[str, Any]:
        return {"members": [member.to_json() for member in self.members], "group": self.group,
                "summary_run_id": self.summary_run_id, "resume_changes": self.resume_changes}

    @classmethod
    def from_json(cls, saved: dict[str, Any], n_members: int) -> RunRecord:
        """Raises ValueError when the record does not hold exactly `n_members` members."""
        members = [MemberRecord.from_json(member) for member in saved["members"]]
        if len(members) != n_members:
            raise ValueError(f"its progress record lists {len(members)} members, its state "
                             f"and metadata {n_members}")
        return cls(members, saved["group"], saved["summary_run_id"],
                   list(saved.get("resume_changes", [])))

    @property
    def started(self) -> bool:
        """Something was recorded already (a resume): epoch 0 is not evaluated again."""
        return any(member.history for member in self.members)

    @property
    def active(self) -> np.ndarray:
        """(M,) True for the members still training."""
        return np.array([member.divergence is None for member in self.members])

    def last_evaluated_epoch(self) -> int:
        return max((member.history[-1]["epoch"] for member in self.members if member.history),
                   default=0)

    def log(self, epoch: int, columns: dict[str, np.ndarray]) -> dict[int, dict[str, float]]:
        """Add one row per member still training ({member: row}), with its best val/loss."""
        rows = {}
        for m, row in enumerate(member_rows(columns, {"epoch": epoch})):
            member = self.members[m]
            if member.divergence is not None:
                continue
            member.best_val_loss = min(member.best_val_loss, row["val/loss"])
            row["val/best_loss"] = member.best_val_loss
            member.history.append(row)
            rows[m] = row
        return rows


def evaluation_columns(results: dict[str, Any], splits: Splits,
                       epoch_losses: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """train/*, val/* and grads/* of every member from one evaluation, each (M,); with
    `epoch_losses`, train/epoch_loss first (epoch 0, the initial parameters, has none)."""
    names = splits.label_names  # several outputs: also train/acc/<name>, val/auc/<name>, ...
    columns = {} if epoch_losses is None else {"train/epoch_loss": epoch_losses}
    columns |= split_metrics(results["train"], splits.y_train, "train", names)
    columns |= split_metrics(results["val"], splits.y_val, "val", names)
    return columns | {f"grads/{key}": value for key, value in results["statistics"].items()}
