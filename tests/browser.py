"""Headless Chromium for the browser tests, driven over the Chrome DevTools protocol on a pipe
(--remote-debugging-pipe: no port, no Python browser library).

    from browser import Chromium
    chromium = Chromium(); chromium.open(url); chromium.click("#play"); chromium.close()

Chromium missing on a Debian machine where the tests run as root (a fresh container, CI): apt
installs it first, once. Elsewhere the test fails, not skips, saying how to install it.
"""

import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

BROWSER_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a small /dev/shm
)


def find_chromium() -> str:
    """The chromium binary, installed with apt first where it is missing and that is possible
    (under a lock: pytest-xdist's workers ask at once)."""
    binary = shutil.which("chromium")
    if binary is None and os.geteuid() == 0 and shutil.which("apt-get"):
        from filelock import FileLock

        with FileLock(Path(tempfile.gettempdir()) / "deltaprop-chromium-install.lock"):
            env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
            for command in (["apt-get", "update", "-qq"],
                            ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                             "chromium", "fonts-dejavu-core"]):
                if shutil.which("chromium") is None:
                    subprocess.run(command, env=env, capture_output=True, timeout=1800,
                                   check=False)
        binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: `apt-get install -y chromium` (Debian), or "
                    "your system's chromium package on PATH")
    return binary


class Chromium:
    """Headless Chromium driven over the DevTools protocol on fds 3 (to it) and 4 (from it)."""

    def __init__(self):
        binary = find_chromium()
        to_browser, self._writer = os.pipe()
        self._reader, from_browser = os.pipe()
        to_browser, from_browser = (self._above_4(fd) for fd in (to_browser, from_browser))
        self._profile = tempfile.mkdtemp(prefix="deltaprop-chromium-")
        # The protocol runs on the browser's fds 3 and 4; posix_spawn puts the pipes there with
        # no Python code between fork and exec (which could deadlock a multithreaded process).
        null = (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)
        self._pid = os.posix_spawn(
            binary,
            [binary, *BROWSER_FLAGS, f"--user-data-dir={self._profile}",
             "--remote-debugging-pipe", "about:blank"],
            os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, to_browser, 3),
                          (os.POSIX_SPAWN_DUP2, from_browser, 4),
                          null, (os.POSIX_SPAWN_DUP2, 1, 2)],
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._id, self.events, self._session = b"", 0, [], None

    @staticmethod
    def _above_4(fd: int) -> int:
        """The same pipe end on a descriptor above 4, so that moving it to 3 or 4 loses nothing."""
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)
        os.close(fd)
        return moved

    def send(self, method: str, params: dict | None = None) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if self._session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self._session
        os.write(self._writer, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._id:
                assert "error" not in reply, reply
                return reply["result"]
            self.events.append(reply)

    def _receive(self) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._reader], [], [], 30)
            assert ready, "chromium did not answer within 30 s"
            chunk = os.read(self._reader, 1 << 16)
            assert chunk, "chromium closed the pipe"
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self.send("Target.attachToTarget",
                                  {"targetId": target, "flatten": True})["sessionId"]
        self.send("Network.enable")
        self.send("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete' && !!document.body.dataset.state")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {expression}")

    def click(self, selector: str) -> None:
        """A real left click in the middle of the element: mouse pressed, then released."""
        box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1],
                                                   "button": "left", "clickCount": 1})

    def key(self, key: str) -> None:
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": key})

    def state(self) -> str:
        return self.evaluate("document.body.dataset.state")

    def shown(self) -> dict[tuple, str]:
        """{(quantity, layer, i, j): text} of every number the page shows now."""
        items = self.evaluate(
            "JSON.stringify([...document.querySelectorAll('[data-q]')].map(e => "
            "[e.dataset.q, e.dataset.layer || null, e.dataset.i || null, e.dataset.j || null, "
            "e.textContent]))")
        return {tuple(item[:4]): item[4] for item in json.loads(items)}

    def close(self) -> None:
        try:
            self.send("Browser.close")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and os.waitpid(self._pid, os.WNOHANG) == (0, 0):
                time.sleep(0.05)
        finally:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(self._pid, os.WNOHANG) == (0, 0):
                    os.kill(self._pid, signal.SIGKILL)
                    os.waitpid(self._pid, 0)
            shutil.rmtree(self._profile, ignore_errors=True)
