"""Experiment tracking: logger=none keeps nothing; W&B offline and disabled need no network;
W&B online against a server that refuses, never answers or errs logs offline within seconds
(online_only stops), one line and no traceback, tested against fake servers on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import http.server
import logging
import os
import socket
import threading
import time
from pathlib import Path

import matplotlib
import pytest

from deltaprop.errors import InputError
from deltaprop.io import tracking
from deltaprop.io.tracking import NullLogger, TrackingError, WandbLogger, make_logger, resolve_mode
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
    logger = make_logger(logger_config(backend="none"), {"seed": 0}, tmp_path)
    assert type(logger) is NullLogger
    assert logger.run_id is None and logger.run_path is None
    exercise(logger, png)
    assert not (tmp_path / "wandb").exists()


def test_wandb_offline_run_is_stored_under_the_run_dir(tmp_path, png):
    run_dir = tmp_path / "run"
    config = {"seed": 3, "optimizer": {"lr": 0.1}}
    logger = make_logger(
        logger_config(backend="wandb", mode="offline", project="deltaprop-test"),
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
    logger = make_logger(logger_config(backend="wandb", mode="disabled"), {"seed": 0}, tmp_path)
    assert isinstance(logger, WandbLogger)
    assert logger.run_path is None
    exercise(logger, png)
    assert not list(tmp_path.glob("wandb/*run-*"))


# ---------------------------------------------------------------- W&B online fails fast
# Fake W&B servers on 127.0.0.1: one that refuses connections, one that accepts and never
# answers, one that trickles a byte at a time, and HTTP servers answering a chosen status.


@pytest.fixture
def online(monkeypatch):
    """An API key in the environment; returns (mode) -> a logger config of that mode."""
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "unset after the test")
    monkeypatch.delenv("WANDB_ERROR_REPORTING")
    return lambda mode="online": logger_config(backend="wandb", mode=mode)


@pytest.fixture
def server_url(monkeypatch):
    """(url) -> WANDB_BASE_URL set to it."""
    return lambda url: monkeypatch.setenv("WANDB_BASE_URL", url)


def refusing_port() -> int:
    with socket.socket() as sock:  # bound, then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_server():
    """Accepts TCP connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def trickling_server():
    """Answers one byte of a status line every 0.2 s, forever: each read returns in time."""
    stop = threading.Event()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)

    def serve():
        connection, _ = sock.accept()
        while not stop.wait(0.2):
            with contextlib.suppress(OSError):
                connection.sendall(b"H")

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    sock.close()


@pytest.fixture
def http_server():
    """(status, body) -> the URL of a server answering every request so; its requests are
    recorded in the returned URL's `.requests` list."""
    servers = []

    def start(status: int, body: bytes = b'{"data": {"viewer": {"id": "u"}}}'):
        requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self):
                length = int(self.headers.get("Content-Length", 0))
                requests.append((self.command, self.path, self.headers.get("Authorization"),
                                 self.rfile.read(length)))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", requests

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def deltaprop_warnings(caplog):
    """caplog.records gets the `deltaprop` loggers' warnings for the body, whatever pytest's
    version: under conftest's console_lines the package logger does not propagate to the root,
    where caplog's handler is (newer pytest versions also attach it to such loggers, 9.0 does
    not)."""
    package = logging.getLogger("deltaprop")
    attached = caplog.handler not in package.handlers
    with caplog.at_level(logging.WARNING, logger="deltaprop"):
        if attached:
            package.addHandler(caplog.handler)
        try:
            yield
        finally:
            if attached:
                package.removeHandler(caplog.handler)


def resolved_with_one_warning(cfg, caplog, seconds: float):
    """resolve_mode(cfg) within `seconds`; the one warning record's message."""
    caplog.clear()
    start = time.monotonic()
    with deltaprop_warnings(caplog):
        resolved = resolve_mode(cfg)
    elapsed = time.monotonic() - start
    assert elapsed < seconds, elapsed
    assert resolved.mode == "offline"
    (record,) = [r for r in caplog.records if r.name.startswith("deltaprop")]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "\n" not in message and not message.lower().startswith("warning")  # one prefix
    assert message.startswith("logger.mode=online, but ")
    assert message.endswith("logging offline instead (upload later with: wandb sync "
                            "<run dir>/wandb/offline-run-*)")
    return message


def test_a_refusing_server_logs_offline_at_once(online, server_url, caplog):
    url = f"http://127.0.0.1:{refusing_port()}"
    server_url(url)
    message = resolved_with_one_warning(online(), caplog, seconds=2)
    assert f"{url} cannot be reached (Connection refused)" in message


def test_a_silent_server_logs_offline_after_the_probe(online, server_url, silent_server,
                                                      caplog, monkeypatch):
    """The issue's case: a server that accepts and never answers took 106-110 s and a CommError
    traceback; the probe now gives up after ONLINE_PROBE_SECONDS (1 s here, 5 by default)."""
    assert tracking.ONLINE_PROBE_SECONDS + tracking.ONLINE_INIT_SECONDS <= 15
    monkeypatch.setattr(tracking, "ONLINE_PROBE_SECONDS", 1.0)
    server_url(silent_server)
    start = time.monotonic()
    message = resolved_with_one_warning(online(), caplog, seconds=3)
    assert time.monotonic() - start >= 0.9  # it did wait for an answer
    assert f"{silent_server} did not answer within 1 s" in message
    # W&B's error reports, sent to the same server, would hold the process's exit ~10 s
    assert os.environ["WANDB_ERROR_REPORTING"] == "false"


def test_a_trickling_server_is_given_the_probe_time_in_all(online, server_url, trickling_server,
                                                           caplog, monkeypatch):
    monkeypatch.setattr(tracking, "ONLINE_PROBE_SECONDS", 1.0)
    server_url(trickling_server)
    message = resolved_with_one_warning(online(), caplog, seconds=3)
    assert "did not answer within 1 s" in message


@pytest.mark.parametrize(("status", "body", "said"), [
    (500, b"{}", "answered with an error (HTTP 500 Internal Server Error)"),
    (502, b"", "answered with an error (HTTP 502 Bad Gateway)"),
    (404, b"", "answered with an error (HTTP 404 Not Found)"),
    (401, b"{}", "refused the API key (HTTP 401 Unauthorized)"),
    (200, b"<html>captive portal</html>", "did not answer as a W&B server does (not JSON)"),
])
def test_a_server_answering_an_error_logs_offline(online, server_url, http_server, caplog,
                                                  status, body, said):
    url, requests = http_server(status, body)
    server_url(url)
    message = resolved_with_one_warning(online(), caplog, seconds=2)
    assert f"{url} {said}" in message and len(requests) == 1


def test_a_server_that_answers_keeps_the_run_online(online, server_url, http_server, caplog):
    url, requests = http_server(200)
    server_url(url)
    with deltaprop_warnings(caplog):
        assert resolve_mode(online()).mode == "online"
        assert resolve_mode(online("online_only")).mode == "online_only"
    assert not [r for r in caplog.records if r.name.startswith("deltaprop")]
    method, path, authorization, body = requests[0]
    assert (method, path) == ("POST", "/graphql") and b"viewer" in body
    assert authorization == "Basic " + base64.b64encode(b"api:" + b"k" * 40).decode()


def test_a_base_url_that_is_not_a_url_logs_offline(online, server_url, caplog):
    server_url("localhost:8080")
    message = resolved_with_one_warning(online(), caplog, seconds=1)
    assert "WANDB_BASE_URL='localhost:8080' is not an http(s) URL" in message


def test_no_api_key_logs_offline(monkeypatch, caplog):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent")
    monkeypatch.setenv("HOME", "/nonexistent")
    message = resolved_with_one_warning(logger_config(backend="wandb", mode="online"), caplog, 1)
    assert "no W&B API key is configured" in message
    assert resolve_mode(logger_config(mode="offline")).mode == "offline"
    assert resolve_mode(logger_config(backend="none", mode="online")).mode == "online"


def test_online_only_stops_in_one_line(online, server_url, http_server, silent_server,
                                       monkeypatch):
    monkeypatch.setattr(tracking, "ONLINE_PROBE_SECONDS", 1.0)
    erroring, _ = http_server(500, b"{}")
    for url, said in [(f"http://127.0.0.1:{refusing_port()}", "cannot be reached"),
                      (silent_server, "did not answer within 1 s"),
                      (erroring, "answered with an error (HTTP 500")]:
        server_url(url)
        with pytest.raises(TrackingError) as caught:
            resolve_mode(online("online_only"))
        message = str(caught.value)
        assert isinstance(caught.value, InputError)  # the entry points: one line, exit 2
        assert "\n" not in message and f"{url} {said}" in message
        assert message.startswith("logger.mode=online_only, but ")
        assert message.endswith("stopping before any work (logger.mode=online would log "
                                "offline instead)")


class FailingOnlineInit:
    """wandb.init that fails online (as it does against a broken server, after its
    init_timeout) and works offline; records the modes and settings it was called with."""

    def __init__(self, init):
        self.init, self.calls = init, []

    def __call__(self, mode, settings, **options):
        import wandb

        self.calls.append((mode, settings.init_timeout))
        if mode == "online":
            raise wandb.errors.CommError("Timed out while retrying: HTTP 500: {}\nConsider ...")
        return self.init(mode=mode, settings=settings, **options)


def test_wandb_init_failing_online_falls_back_offline(tmp_path, monkeypatch, caplog):
    import wandb

    failing = FailingOnlineInit(wandb.init)
    monkeypatch.setattr(wandb, "init", failing)
    with deltaprop_warnings(caplog):
        logger = make_logger(logger_config(backend="wandb", mode="online"), {}, tmp_path / "run")
    logger.finish()
    assert [mode for mode, _ in failing.calls] == ["online", "offline"]
    assert failing.calls[0][1] == tracking.ONLINE_INIT_SECONDS
    (record,) = [r for r in caplog.records if r.name.startswith("deltaprop")]
    assert record.getMessage().startswith("logger.mode=online, but wandb.init failed: Timed "
                                          "out while retrying: HTTP 500: {}; logging offline")
    assert Path(logger.run_path).name.startswith("offline-run-")
    failing.calls.clear()
    with pytest.raises(TrackingError, match="^logger.mode=online_only, but wandb.init failed"):
        make_logger(logger_config(backend="wandb", mode="online_only"), {}, tmp_path / "other")
    assert [mode for mode, _ in failing.calls] == ["online"]


def test_model_aliases_mark_the_best_parameters():
    from deltaprop.io.tracking import model_aliases

    assert model_aliases({"val/loss": 0.3, "val/best_loss": 0.3}) == ["latest", "best"]
    assert model_aliases({"val/loss": 0.4, "val/best_loss": 0.3}) == ["latest"]
    assert model_aliases({"val/loss": 0.3, "val/best_loss": 0.3, "diverged": True}) == ["latest"]
