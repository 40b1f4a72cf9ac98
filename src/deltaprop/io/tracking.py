"""Experiment tracking at the edge of the program: Weights & Biases, or nothing.

W&B runs offline by default: no account, no network; the run is stored under the run directory
(`<run_dir>/wandb/offline-run-*`) and can be uploaded later with `wandb sync <that dir>`.
Nothing here is ever called from inside jitted code.
"""

from __future__ import annotations

import dataclasses
import logging
import netrc
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from deltaprop.choices import LoggerMode

log = logging.getLogger(__name__)


class NullLogger:
    """logger=none: keeps nothing beyond what the trainer writes to the run directory."""

    run_id: str | None = None
    run_path: str | None = None

    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_images(self, images: dict[str, Path], step: int) -> None:
        pass

    def log_table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None:
        pass

    def log_artifact(self, name: str, kind: str, path: Path, aliases: Sequence[str] = (),
                     metadata: dict[str, Any] | None = None) -> None:
        pass

    def log_model(self, path: Path, final: dict[str, Any]) -> None:
        """The run's parameters as the artifact `model-<run id>` (see model_aliases)."""
        self.log_artifact(f"model-{self.run_id}", "model", path, model_aliases(final),
                          {key: final[key] for key in MODEL_METADATA if key in final})

    def summarize(self, metrics: dict[str, float]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


MODEL_METADATA = ("epoch", "val/loss", "val/best_loss", "test/acc", "diverged")


def model_aliases(final: dict[str, Any]) -> list[str]:
    """`latest` always; `best` too when these parameters are the run's best validated ones
    (their val/loss is its val/best_loss): `model-<id>:best` is then the model to use."""
    best = final.get("val/loss") is not None and final.get("val/loss") == final.get("val/best_loss")
    return ["latest", "best"] if best and not final.get("diverged") else ["latest"]


class WandbLogger(NullLogger):
    """One W&B run. `resume_id` continues an earlier run under the same id."""

    def __init__(
        self,
        logger_cfg: Any,
        config: dict[str, Any],
        run_dir: Path,
        name: str | None = None,
        group: str | None = None,
        resume_id: str | None = None,
        job_type: str = "train",
        system_metrics: bool = True,
    ):
        os.environ.setdefault("WANDB_START_METHOD", "thread")
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        self._wandb = wandb
        self.run = wandb.init(
            project=logger_cfg.project,
            entity=logger_cfg.entity,
            group=logger_cfg.group or group,
            tags=list(logger_cfg.tags),
            name=name,
            job_type=job_type,
            config=config,
            dir=str(run_dir),
            mode=str(logger_cfg.mode),
            id=resume_id,
            resume="allow" if resume_id else None,
            reinit="create_new",
            # System metrics: W&B's CPU/GPU/memory charts (logger.system_metrics), sampled by
            # a thread beside the run; a sweep's member runs leave them to its summary run.
            settings=wandb.Settings(
                console="off",
                x_disable_stats=not (system_metrics and getattr(logger_cfg, "system_metrics", True)),
            ),
        )
        self.run_id = self.run.id
        self.finished = False
        self.log_artifacts = logger_cfg.log_artifacts
        self.run_path = str(Path(self.run.dir).parent) if logger_cfg.mode != "disabled" else None

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def log_images(self, images: dict[str, Path], step: int) -> None:
        self.run.log(
            {name: self._wandb.Image(str(path)) for name, path in images.items()}, step=step
        )

    def log_table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None:
        self.run.log({name: self._wandb.Table(columns=columns, data=rows)})

    def log_artifact(self, name: str, kind: str, path: Path, aliases: Sequence[str] = (),
                     metadata: dict[str, Any] | None = None) -> None:
        if not self.log_artifacts:  # logger.log_artifacts=false
            return
        artifact = self._wandb.Artifact(name, type=kind, metadata=metadata)
        artifact.add_file(str(path))
        self.run.log_artifact(artifact, aliases=list(aliases) or None)

    def summarize(self, metrics: dict[str, float]) -> None:
        self.run.summary.update(metrics)

    def finish(self, exit_code: int = 0) -> None:
        """End the run (exit_code 1 marks it failed); later calls do nothing."""
        if not self.finished:
            self.finished = True
            self.run.finish(exit_code=exit_code)


ONLINE_PROBE_SECONDS = 3.0  # how long logger.mode=online waits to reach the W&B server


def resolve_mode(logger_cfg: Any) -> Any:
    """logger_cfg, with mode=online turned into offline (and one warning line) when no API key is
    configured or the W&B server cannot be reached within a few seconds: the run is logged
    offline instead of stalling or failing after training (upload later with `wandb sync`)."""
    if logger_cfg.name != "wandb" or logger_cfg.mode != "online":
        return logger_cfg
    base_url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    host = urlparse(base_url).hostname or base_url
    problem = None
    if not _has_api_key(host):
        problem = "no W&B API key is configured (set WANDB_API_KEY or run `wandb login`)"
    elif not _reachable(base_url):
        problem = f"{host} cannot be reached within {ONLINE_PROBE_SECONDS:g} s"
    if problem is None:
        return logger_cfg
    log.warning(f"warning: logger.mode=online, but {problem}; logging offline instead "
          "(upload later with: wandb sync <run dir>/wandb/offline-run-*)")
    return dataclasses.replace(logger_cfg, mode=LoggerMode.offline)


def _has_api_key(host: str) -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def _reachable(base_url: str) -> bool:
    parsed = urlparse(base_url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=ONLINE_PROBE_SECONDS):
            return True
    except OSError:
        return False


def make_logger(
    logger_cfg: Any,
    config: dict[str, Any],
    run_dir: Path,
    name: str | None = None,
    group: str | None = None,
    resume_id: str | None = None,
    job_type: str = "train",
    system_metrics: bool = True,
) -> NullLogger:
    if logger_cfg.name == "none":
        return NullLogger()
    return WandbLogger(logger_cfg, config, run_dir, name, group, resume_id, job_type,
                       system_metrics)
