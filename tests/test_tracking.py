"""Experiment tracking: logger=none keeps nothing; W&B offline and disabled need no network."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

from deltaprop.io.tracking import NullLogger, WandbLogger, make_logger
from deltaprop.settings import LoggerSettings

matplotlib.use("Agg")


def logger_config(**overrides):
    return LoggerSettings(**overrides)


@pytest.fixture
def png(tmp_path) -> Path:
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(2, 2))
    axis.plot([0, 1], [1, 0])
    path = tmp_path / "inputs" / "curve.png"
    path.parent.mkdir()
    figure.savefig(path)
    plt.close(figure)
    return path


def exercise(logger: NullLogger, png: Path) -> None:
    """Everything the trainer does with a logger, in order."""
    logger.log_table("gradcheck", ["layer", "pass"], [[2, True], [3, True]])
    logger.log({"train/loss": 0.5, "val/acc": 0.75}, step=1)
    logger.log({"train/loss": 0.25, "val/acc": 0.875}, step=2)
    logger.log_images({"plots/curve": png}, step=2)
    logger.log_artifact("params", "model", png)
    logger.log_model(png, {"epoch": 2, "val/loss": 0.3, "val/best_loss": 0.3})
    logger.summarize({"test/acc": 0.9})
    logger.finish()


def test_logger_none_is_a_null_logger(tmp_path, png):
    logger = make_logger(logger_config(name="none"), {"seed": 0}, tmp_path)
    assert type(logger) is NullLogger
    assert logger.run_id is None and logger.run_path is None
    exercise(logger, png)
    assert not (tmp_path / "wandb").exists()


def test_wandb_offline_run_is_stored_under_the_run_dir(tmp_path, png):
    run_dir = tmp_path / "run"
    config = {"seed": 3, "optimizer": {"lr": 0.1}}
    logger = make_logger(
        logger_config(name="wandb", mode="offline", project="deltaprop-test"),
        config,
        run_dir,
        name="unit-test",
        group="tests",
    )
    assert isinstance(logger, WandbLogger)
    assert logger.run_id
    exercise(logger, png)
    # wandb 0.31's service may still be writing the run file when finish() returns; shutting
    # the service down (as the interpreter's exit does) flushes it.
    import wandb

    wandb.teardown()

    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run = runs[0]
    assert Path(logger.run_path) == run
    assert run.name.endswith(logger.run_id)
    record = (run / f"run-{logger.run_id}.wandb").read_bytes()
    # the run record (project, name, group), metrics, summary and the artifact's manifest
    texts = (b"deltaprop-test", b"unit-test", b"tests", b"train/loss", b"test/acc", b"curve.png")
    for text in texts:
        assert text in record, text
    media = run / "files" / "media"
    assert list((media / "images" / "plots").glob("curve_2_*.png"))
    assert list((media / "table").glob("gradcheck_*.table.json"))


def test_wandb_disabled_mode_works_and_writes_nothing(tmp_path, png):
    logger = make_logger(logger_config(name="wandb", mode="disabled"), {"seed": 0}, tmp_path)
    assert isinstance(logger, WandbLogger)
    assert logger.run_path is None
    exercise(logger, png)
    assert not list(tmp_path.glob("wandb/*run-*"))


def test_online_mode_without_a_reachable_server_logs_offline_within_seconds(monkeypatch, capsys):
    import time

    from deltaprop.io.tracking import resolve_mode

    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    resolved = resolve_mode(logger_config(mode="online"))
    assert time.monotonic() - start < 5
    assert resolved.mode == "offline"
    assert "cannot be reached" in capsys.readouterr().out
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("NETRC", "/nonexistent")
    monkeypatch.setenv("HOME", "/nonexistent")
    assert resolve_mode(logger_config(mode="online")).mode == "offline"
    assert "no W&B API key" in capsys.readouterr().out
    assert resolve_mode(logger_config(mode="offline")).mode == "offline"


def test_model_aliases_mark_the_best_parameters():
    from deltaprop.io.tracking import model_aliases

    assert model_aliases({"val/loss": 0.3, "val/best_loss": 0.3}) == ["latest", "best"]
    assert model_aliases({"val/loss": 0.4, "val/best_loss": 0.3}) == ["latest"]
    assert model_aliases({"val/loss": 0.3, "val/best_loss": 0.3, "diverged": True}) == ["latest"]
