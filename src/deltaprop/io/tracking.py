"""Experiment tracking at the edge of the program: Weights & Biases, or nothing.

W&B runs offline by default: no account, no network; the run is stored under the run directory
(`<run_dir>/wandb/offline-run-*`) and can be uploaded later with `wandb sync <that dir>`.
Nothing here is ever called from inside jitted code.

logger.mode=online first asks the server (`resolve_mode`): one GraphQL request, the query W&B's
own login makes, to WANDB_BASE_URL with the API key, answered within ONLINE_PROBE_SECONDS. A
server that cannot be reached, is silent, answers an error or refuses the key: the run logs
offline, with one warning line. logger.mode=online_only stops instead (TrackingError, exit 2)
before any work. wandb.init itself is given ONLINE_INIT_SECONDS; if it still fails, the same
fallback (or stop) applies. The worst case is thus ~15 s, never W&B's own ~110 s and traceback.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import netrc
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from deltaprop.choices import LoggerMode
from deltaprop.errors import InputError

log = logging.getLogger(__name__)


class TrackingError(InputError):
    """logger.mode=online_only, and W&B cannot be used: the message says why, in one line."""


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
        console: bool = False,
    ):
        os.environ.setdefault("WANDB_START_METHOD", "thread")
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        self._wandb = wandb
        options = {
            "project": logger_cfg.project,
            "entity": logger_cfg.entity,
            "group": logger_cfg.group or group,
            "tags": list(logger_cfg.tags),
            "name": name,
            "notes": getattr(logger_cfg, "notes", None),
            "job_type": job_type,
            "config": config,
            "dir": str(run_dir),
            "id": resume_id,
            "resume": "allow" if resume_id else None,
            "reinit": "create_new",
        }
        stats = system_metrics and getattr(logger_cfg, "system_metrics", True)
        mode = str(logger_cfg.mode)
        self.run = self._init(options, mode, stats, console)
        self.run_id = self.run.id
        self.finished = False
        self.log_artifacts = logger_cfg.log_artifacts
        self.run_path = str(Path(self.run.dir).parent) if mode != "disabled" else None

    def _init(self, options: dict[str, Any], mode: str, stats: bool, console: bool):
        """wandb.init; online within ONLINE_INIT_SECONDS, else offline with one warning line
        (online_only: TrackingError)."""
        wandb = self._wandb
        # System metrics: W&B's CPU/GPU/memory charts (logger.system_metrics), sampled by a
        # thread beside the run; a sweep's member runs leave them to its summary run, and the
        # console output (the run's files/output.log) too.
        settings = {"console": "wrap" if console else "off", "x_disable_stats": not stats}
        if mode not in ("online", "online_only"):
            return wandb.init(mode=mode, settings=wandb.Settings(**settings), **options)
        try:
            return wandb.init(mode="online", settings=wandb.Settings(
                init_timeout=ONLINE_INIT_SECONDS, **settings), **options)
        except Exception as error:  # noqa: BLE001  (wandb.errors.Error, and whatever a broken
            # server's answers make wandb raise: pydantic's ValidationError, ...)
            problem = f"wandb.init failed: {_one_line(error)}"
        fall_back(mode, problem)
        return wandb.init(mode="offline", settings=wandb.Settings(**settings), **options)

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


ONLINE_PROBE_SECONDS = 5.0  # how long logger.mode=online waits for the W&B server to answer
ONLINE_INIT_SECONDS = 10.0  # then how long wandb.init may take (W&B's default: 90 s)
DEFAULT_BASE_URL = "https://api.wandb.ai"
# What W&B's own login asks: who the key belongs to.
_VIEWER_QUERY = json.dumps({"query": "query Viewer { viewer { id } }"}).encode()


def resolve_mode(logger_cfg: Any) -> Any:
    """logger_cfg, with mode=online turned into offline (and one warning line) when no API key is
    configured or the W&B server does not answer a request within ONLINE_PROBE_SECONDS: the run
    is logged offline instead of stalling or failing (upload later with `wandb sync`).

    Raises:
      TrackingError: mode=online_only and W&B cannot be used (one line saying why).
    """
    if logger_cfg.backend != "wandb" or str(logger_cfg.mode) not in ("online", "online_only"):
        return logger_cfg
    base_url = os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL).rstrip("/")
    key = _api_key(urlparse(base_url).hostname or base_url)
    if key is None:
        problem = "no W&B API key is configured (set WANDB_API_KEY or run `wandb login`)"
    else:
        problem = probe_server(base_url, key, ONLINE_PROBE_SECONDS)
    if problem is None:
        return logger_cfg
    fall_back(str(logger_cfg.mode), problem)
    return dataclasses.replace(logger_cfg, mode=LoggerMode.offline)


def fall_back(mode: str, problem: str) -> None:
    """One warning line (mode=online: the run logs offline), or TrackingError (online_only)."""
    if mode == "online_only":
        raise TrackingError(f"logger.mode=online_only, but {problem}; stopping before any work "
                            "(logger.mode=online would log offline instead)")
    # W&B's own error reports go to the same server: a silent one would hold the exit ~10 s.
    os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
    # The record's level says "warning"; the text says what happened (no second prefix).
    log.warning(f"logger.mode=online, but {problem}; logging offline instead (upload later "
                "with: wandb sync <run dir>/wandb/offline-run-*)")


def _api_key(host: str) -> str | None:
    if os.environ.get("WANDB_API_KEY"):
        return os.environ["WANDB_API_KEY"]
    try:
        found = netrc.netrc().authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    return found[2] if found else None


def probe_server(base_url: str, key: str, seconds: float) -> str | None:
    """None when the W&B server at `base_url` answers W&B's login query with JSON within
    `seconds` (all told: connecting, sending, answering); else what went wrong, in words."""
    if urlparse(base_url).scheme not in ("http", "https"):
        return f"WANDB_BASE_URL={base_url!r} is not an http(s) URL"
    outcome: list[str | None] = []
    worker = threading.Thread(target=lambda: outcome.append(_ask(base_url, key, seconds)),
                              daemon=True)  # a server that trickles bytes is left behind
    worker.start()
    worker.join(seconds)
    return outcome[0] if outcome else f"{base_url} did not answer within {seconds:g} s"


def _ask(base_url: str, key: str, seconds: float) -> str | None:
    token = base64.b64encode(f"api:{key}".encode()).decode()
    request = urllib.request.Request(
        f"{base_url}/graphql", data=_VIEWER_QUERY, method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=seconds) as response:
            json.loads(response.read())
    except urllib.error.HTTPError as error:
        refused = error.code in (401, 403)
        what = "refused the API key" if refused else "answered with an error"
        return f"{base_url} {what} (HTTP {error.code} {error.reason})"
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            return f"{base_url} did not answer within {seconds:g} s"
        return f"{base_url} cannot be reached ({_one_line(reason)})"
    except ValueError:
        return f"{base_url} did not answer as a W&B server does (not JSON)"
    return None


def _one_line(error: Any) -> str:
    """An error's text on one line: its first line."""
    text = str(getattr(error, "strerror", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def make_logger(
    logger_cfg: Any,
    config: dict[str, Any],
    run_dir: Path,
    name: str | None = None,
    group: str | None = None,
    resume_id: str | None = None,
    job_type: str = "train",
    system_metrics: bool = True,
    console: bool = False,
) -> NullLogger:
    """A W&B run (logger.backend=wandb), or a NullLogger; `console`: capture the console output
    into the run (output.log)."""
    if logger_cfg.backend == "none":
        return NullLogger()
    return WandbLogger(logger_cfg, config, run_dir, name, group, resume_id, job_type,
                       system_metrics, console)
