"""A run's W&B runs: one per member (a single run has its own), and a sweep's summary run, all
in one group; continued under their ids on resume. Nothing here is called from inside jit.

    tracker = Tracker(setup)
    tracker.open(record)                    # record.members[m].run_id: each member's run
    tracker.log(epoch, rows)                # {member: row}
    tracker.diverged(m, epoch)
    tracker.close(exit_code)                # whatever is still open (a failed run: 1)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np

from deltaprop.gradient_check import GRADCHECK_BATCH, GRADCHECK_MAX_PARAMS, gradcheck
from deltaprop.io.tracking import NullLogger, make_logger, resolve_mode
from deltaprop.population import Member
from deltaprop.run.records import RunRecord
from deltaprop.run.setup import RunSetup, jax_environment
from deltaprop.settings import TrainSettings, plain

log = logging.getLogger(__name__)


# Overrides that say where a run goes or how it looks, not what it trains: not in its name.
NOT_IN_NAMES = ("hydra.", "run_dir", "logger.", "trainer.progress", "print_config",
                "trainer.checkpoint_every", "trainer.keep_checkpoints", "trainer.resume")


def run_group(folder: Path) -> str:
    """A W&B group named as the folder the runs are in: its path under outputs/ or multirun/
    (e.g. train/default/2026-12-02_10-00-00-123456), else the folder's name."""
    parts = Path(folder).resolve().parts
    roots = [index for index, part in enumerate(parts) if part in ("outputs", "multirun")]
    kept = parts[roots[-1] + 1:] if roots and roots[-1] < len(parts) - 1 else parts[-1:]
    return "/".join(kept)[-128:]


def name_of_overrides(overrides: list[str], fallback: str) -> str:
    """A run's W&B name from its command line, as sweep members are named: `lr0.1-seed3` for
    optimizer.lr=0.1 seed=3; `fallback` (the experiment's name) without any."""
    parts = []
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if value and not key.startswith(NOT_IN_NAMES) and "/" not in key:
            parts.append(f"{key.split('.')[-1]}{value}")
    return "-".join(parts)[:128] or fallback


def identity(settings: TrainSettings, run_dir: Path) -> tuple[str, str]:
    """(run name, group) of a single run or a sweep: logger.name, else the command line's
    overrides; logger.group, else the folder (a multirun's sweep folder, which holds its jobs)."""
    overrides, folder = [], run_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        overrides = list(hydra_cfg.overrides.task)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            folder = Path(hydra_cfg.sweep.dir)
    name = settings.logger.name or name_of_overrides(overrides, settings.experiment_name)
    return name, settings.logger.group or run_group(folder)


def member_config(settings: TrainSettings, member: Member) -> dict[str, Any]:
    """The config a member's W&B run shows: the run's, with this member's seed and
    hyperparameters (the config of the single run it equals)."""
    config = plain(settings)
    config["seed"] = member.seed
    config["optimizer"]["lr"] = member.lr
    config["optimizer"]["weight_decay"] = member.weight_decay
    if member.momentum is not None:
        key = "b1" if settings.optimizer.name == "adam" else "momentum"
        config["optimizer"][key] = member.momentum
    config["model"]["init_scale"] = member.init_scale
    config["member"] = member.index
    config["data_seed"] = settings.data_seed  # the split is shared by all members
    return config


class Tracker:
    """The W&B runs of a population (logger=none: NullLoggers that keep nothing)."""

    def __init__(self, setup: RunSetup):
        """Decides where the runs go before any work: logger.mode=online without a W&B server
        that answers logs offline (one warning line), or stops (online_only: TrackingError)."""
        self.setup = setup
        self.is_main = jax.process_index() == 0  # several hosts: only process 0 tracks
        self.logger = resolve_mode(setup.settings.logger) if self.is_main else None
        self.members: list[NullLogger] = [NullLogger() for _ in setup.members]
        self.summary = NullLogger()  # a sweep's summary run

    @property
    def main(self) -> NullLogger:
        """The run a single run logs to, or a sweep's summary run."""
        return self.summary if self.setup.sweep else self.members[0]

    def open(self, record: RunRecord) -> None:
        """One W&B run per member (continued under its id on resume), and a sweep's summary run.
        Each is kept as soon as it is open, so a failure part-way finishes those already open."""
        if not self.is_main:
            return
        setup, settings, logger = self.setup, self.setup.settings, self.logger
        recorded = {"jax": jax_environment()}
        if record.resume_changes:
            recorded["resume_changes"] = record.resume_changes
        name, group = identity(settings, setup.run_dir)
        record.group = record.group or group
        if not setup.sweep:
            self.members[0] = make_logger(logger, plain(settings) | recorded, setup.run_dir,
                                          name=name, group=record.group,
                                          resume_id=record.members[0].run_id, console=True)
        else:
            for m, (member, saved) in enumerate(zip(setup.members, record.members)):
                self.members[m] = make_logger(
                    logger, member_config(settings, member) | recorded, setup.run_dir,
                    name=f"{name}-{member.name}" if settings.logger.name else member.name,
                    group=record.group, resume_id=saved.run_id,
                    system_metrics=False,  # one set of machine charts: the summary run's
                )
            self.summary = make_logger(
                logger, plain(settings) | recorded, setup.run_dir,
                name=f"{name}-summary", group=record.group, job_type="sweep-summary",
                resume_id=record.summary_run_id, console=True,
            )
            record.summary_run_id = self.summary.run_id
        for saved, run in zip(record.members, self.members):
            saved.run_id = run.run_id

    def log(self, epoch: int, rows: dict[int, dict[str, float]]) -> None:
        for m, row in rows.items():
            self.members[m].log(row, step=epoch)

    def diverged(self, m: int, epoch: int) -> None:
        self.members[m].summarize({"diverged_epoch": epoch})

    def log_gradcheck(self, first_member_params) -> None:
        """The gradient check of the first member's initial parameters, as a W&B table."""
        settings = self.setup.settings
        if not self.is_main or settings.logger.backend == "none" or not settings.logger.log_gradcheck:
            return
        if sum(np.size(leaf) for leaf in jax.tree.leaves(first_member_params)) \
                > GRADCHECK_MAX_PARAMS:
            return
        splits, model = self.setup.splits, self.setup.model
        report = gradcheck(first_member_params, splits.x_train[:GRADCHECK_BATCH],
                           splits.y_train[:GRADCHECK_BATCH], loss=model.loss,
                           activation=model.activation)
        self.main.log_table("gradcheck", *report.table())

    def close(self, exit_code: int) -> None:
        """Finish every run still open (a run finished already is left as it is)."""
        for run in [*self.members, self.summary]:
            run.finish(exit_code)
