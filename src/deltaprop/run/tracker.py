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
import time
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


def hydra_job_identity(settings: TrainSettings) -> tuple[str | None, str | None]:
    """(run name, group): in a multirun each job is its own run, grouped by sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None, None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sweep_dir = Path(hydra_cfg.sweep.dir)
        group = f"{sweep_dir.parent.name}/{sweep_dir.name}"
        return f"{settings.experiment_name}-{hydra_cfg.job.num}", group
    return None, None


def sweep_group(settings: TrainSettings) -> str:
    """A sweep's W&B group: logger.group, else the Hydra multirun job, else
    sweep-<experiment_name>-<time>."""
    if settings.logger.group:
        return str(settings.logger.group)
    name, hydra_group = hydra_job_identity(settings)
    if hydra_group:
        return f"{hydra_group}/{name}"
    return f"sweep-{settings.experiment_name}-{time.strftime('%Y-%m-%d_%H-%M-%S')}"


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
        if not setup.sweep:
            name, group = hydra_job_identity(settings)
            self.members[0] = make_logger(logger, plain(settings) | recorded, setup.run_dir,
                                          name=name, group=group,
                                          resume_id=record.members[0].run_id)
        else:
            record.group = record.group or sweep_group(settings)
            for m, (member, saved) in enumerate(zip(setup.members, record.members)):
                self.members[m] = make_logger(
                    logger, member_config(settings, member) | recorded, setup.run_dir,
                    name=member.name, group=record.group, resume_id=saved.run_id,
                    system_metrics=False,  # one set of machine charts: the summary run's
                )
            self.summary = make_logger(
                logger, plain(settings) | recorded, setup.run_dir,
                name=f"{record.group}-summary", group=record.group, job_type="sweep-summary",
                resume_id=record.summary_run_id,
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
        if not self.is_main or settings.logger.name == "none" or not settings.logger.log_gradcheck:
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
