"""The end of a run: every member's final row (its last evaluation and its test metrics), the
outputs (outputs.py), the W&B summaries, the lines printed, and the RunResult.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np

from deltaprop.metrics import IDENTITY, aggregate, member_rows, metric_keys, split_metrics
from deltaprop.run import outputs
from deltaprop.run.records import RunRecord, evaluation_columns
from deltaprop.run.result import RunResult
from deltaprop.run.resume import compared
from deltaprop.run.setup import RunSetup
from deltaprop.run.tracker import Tracker
from deltaprop.settings import flat

log = logging.getLogger(__name__)


def final_rows(setup: RunSetup, record: RunRecord, results: dict[str, Any]) -> list[dict]:
    """Member m's last evaluation and test metrics; a diverged member's are those of the state
    it was frozen at (its metrics in `results`, the evaluation at the end)."""
    splits = setup.splits
    tests = member_rows(split_metrics(results["test"], splits.y_test, "test",
                                      splits.label_names), {})
    now = member_rows(evaluation_columns(results, splits), {})
    rows = []
    for m, member in enumerate(record.members):
        if member.divergence is None:
            row = member.history[-1] | tests[m]
        else:
            best = min(member.best_val_loss, now[m]["val/loss"])
            row = {"epoch": member.divergence.epoch - 1, **now[m], "val/best_loss": best,
                   **tests[m]}
        if setup.sweep:
            row = outputs.member_final(setup.members[m], row, member.divergence)
        rows.append(row)
    return rows


def finish(setup: RunSetup, record: RunRecord, tracker: Tracker, results: dict[str, Any],
           final_params: list, initial_params: list) -> RunResult:
    """Write the outputs, summarize the W&B runs and return the run.

    Args:
      results: the evaluation of the final state (every member).
      final_params, initial_params: each member's parameters (host arrays), member m at m.
    """
    finals = final_rows(setup, record, results)
    if not setup.sweep:
        metrics = _finish_single(setup, record, tracker, final_params[0], finals[0])
    else:
        metrics = _finish_sweep(setup, record, tracker, final_params, finals)
    return RunResult(
        metrics, setup.members, tuple(tuple(m.history) for m in record.members),
        tuple(initial_params), tuple(final_params),
        tuple(m.divergence is not None for m in record.members), setup.run_dir)


def _finish_single(setup, record, tracker, params, final) -> dict[str, Any]:
    logger, settings = tracker.members[0], setup.settings
    if tracker.is_main:
        outputs.write_run_outputs(setup.run_dir, record.members[0].history, final, params,
                                  setup.splits, logger, settings.trainer.epochs,
                                  settings.logger.plots, setup.model)
        outputs.print_summary(final, setup.run_dir, logger.run_path)
    logger.summarize(final)
    logger.finish(0)
    return final


def _finish_sweep(setup, record, tracker, params, finals) -> dict[str, Any]:
    settings, axes = setup.settings, setup.members[0].swept
    summary = aggregate(finals, settings.objective, axes)
    if not tracker.is_main:  # every process returns the result; only process 0 writes
        return summary
    stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *params)
    by_point, paths = outputs.write_sweep_outputs(
        setup.run_dir, setup.members, [m.history for m in record.members], finals, stacked,
        summary, settings.logger.plots, setup.splits, setup.model, grid_record(setup))
    for member, final, logger in zip(setup.members, finals, tracker.members):
        logger.summarize(final)
        logger.log_model(paths[f"members/{member.index}"], final)
        logger.finish(1 if final["diverged"] else 0)  # a diverged member's run is failed
    _summarize_sweep(tracker, finals, summary, paths.get("curves"), settings.trainer.epochs)
    if "sweep/best_lr" in summary:
        best = {axis: summary[f"sweep/best_{axis}"] for axis in axes}
        title = (f"final metrics of the best {outputs.point_label(best, axes)} "
                 f"(mean over its finite members)")
    else:
        what = "learning rate" if tuple(axes) == ("lr",) else "grid point"
        title = f"final metrics: no {what} has a finite mean {settings.objective}"
    outputs.print_summary(summary, setup.run_dir, tracker.summary.run_path, title)
    keys = [key for key in outputs.BY_POINT_KEYS if f"{key}/mean" in by_point[0]]
    outputs.print_by_point(by_point, keys, axes)
    if tracker.summary.run_path:
        log.info(f"W&B group {record.group!r}: {len(finals)} member runs and one summary run; "
                 f"upload all with: wandb sync "
                 f"{Path(tracker.summary.run_path).parent.resolve()}/offline-run-*")
    return summary


def grid_record(setup: RunSetup) -> dict[str, Any]:
    """grid.json: what makes blocks of one sweep (sweep.block) joinable by deltaprop-gather:
    every setting that changes what is computed but the block, the grid's size, axes and objective, and this block."""
    settings = {key: value for key, value in flat(setup.settings).items()
                if compared(key) and key != "sweep.block"}
    return {"block": setup.settings.sweep.block, "grid_members": setup.grid_size,
            "axes": list(setup.members[0].swept), "objective": setup.settings.objective,
            "settings": settings, "data": setup.data_hash}


def _summarize_sweep(tracker: Tracker, finals, summary, curves_path, epochs: int) -> None:
    logger = tracker.summary
    if curves_path is not None:
        logger.log_images({"plots/sweep_curves": curves_path}, step=epochs)
    columns = [*IDENTITY, *metric_keys(finals)]
    logger.log_table("members", columns, [[row.get(c) for c in columns] for row in finals])
    logger.summarize({k: v for k, v in summary.items() if isinstance(v, (int, float))})
    logger.finish(0)
