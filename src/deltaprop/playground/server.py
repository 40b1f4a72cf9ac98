"""The playground's web server: Starlette routes over training sessions, served by uvicorn on
127.0.0.1 only.

    GET  /                                 the page (static/index.html)
    GET  /static/...                       its script and style: package data, nothing else
    GET  /api/options                      choices, defaults and limits of the form
    POST /api/sessions                     {settings} -> a new session (one per browser tab)
    POST /api/sessions/{id}/settings       {settings} -> restart with them
    POST /api/sessions/{id}/advance        {"steps": k} -> k SGD steps, then the frame
    GET  /api/sessions/{id}/frame          the frame and the data points
    GET  /api/sessions/{id}/step           the current step, every number, checked
    GET  /api/sessions/{id}/step/picture   ?example=n: the worked example's network picture (SVG)
    GET  /sessions/{id}/step.html          sigmoid + BCE: the worked example's page of the step

Bad settings answer 400 with {"field", "message"} and change nothing; an unknown session
answers 404. Each request does a frame's work at most (a few ms of jitted steps), so the page
stays responsive; training advances only when the page asks. Requests must name the host
127.0.0.1 or localhost (no DNS rebinding), POST bodies must be JSON, and the page may load
nothing but this server's own files (Content-Security-Policy).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import secrets
import socket
import sys
import threading
from collections import OrderedDict

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from deltaprop.errors import InputError
from deltaprop.playground import views
from deltaprop.playground.problem import load_problem
from deltaprop.playground.session import TrainingSession
from deltaprop.playground.settings import MAX_CSV_CHARACTERS, options, parse_settings

MAX_SESSIONS = 16  # the least recently used session is dropped beyond this
MAX_BODY = 2 * MAX_CSV_CHARACTERS + 100_000  # bytes of a POST body
ALLOWED_HOSTS = ("127.0.0.1", "localhost")
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' "
    "data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class SessionStore:
    """Sessions by id, at most `capacity`, the least recently used dropped first; one lock per
    session so that two requests of one tab never step the same network at once."""

    def __init__(self, capacity: int = MAX_SESSIONS):
        self.capacity = capacity
        self._sessions: OrderedDict[str, tuple[threading.Lock, TrainingSession]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, session: TrainingSession) -> str:
        identifier = secrets.token_hex(8)
        with self._lock:
            self._sessions[identifier] = (threading.Lock(), session)
            while len(self._sessions) > self.capacity:
                self._sessions.popitem(last=False)
        return identifier

    def get(self, identifier: str) -> tuple[threading.Lock, TrainingSession] | None:
        with self._lock:
            entry = self._sessions.get(identifier)
            if entry is not None:
                self._sessions.move_to_end(identifier)
            return entry

    def replace(self, identifier: str, session: TrainingSession) -> None:
        with self._lock:
            self._sessions[identifier] = (self._sessions[identifier][0], session)


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"field": field, "message": message}, status_code=status)


async def _json_body(request: Request):
    """The POST body as JSON, or an error response: too large, not JSON, not an object."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return _error(415, "send the request body as application/json")
    body = await request.body()
    if len(body) > MAX_BODY:
        return _error(413, f"the request has {len(body)} bytes; at most {MAX_BODY}")
    try:
        value = json.loads(body or b"{}")
    except ValueError as error:
        return _error(400, f"the request body is not JSON: {error}")
    return value if isinstance(value, dict) else _error(400, "the body must be a JSON object")


def _new_session(form: dict) -> TrainingSession:
    settings = parse_settings(form)
    return TrainingSession(settings, load_problem(settings))


async def _start(request: Request, identifier: str | None) -> Response:
    """A new session (identifier None) or a restart; 400 naming the field for a bad value."""
    form = await _json_body(request)
    if isinstance(form, Response):
        return form
    store: SessionStore = request.app.state.store
    if identifier is not None and store.get(identifier) is None:
        return _unknown(identifier)
    try:
        session = await run_in_threadpool(_new_session, form)
    except InputError as error:
        return _error(400, str(error), getattr(error, "field", None))
    if identifier is None:
        identifier = store.add(session)
    else:
        store.replace(identifier, session)
    return JSONResponse({"session": identifier, **views.full_frame(session)})


def _unknown(identifier: str) -> JSONResponse:
    return _error(404, f"no session {identifier!r} (the server restarted, or the tab was idle "
                  f"while {MAX_SESSIONS} others trained): reload the page")


async def create(request: Request) -> Response:
    return await _start(request, None)


async def restart(request: Request) -> Response:
    return await _start(request, request.path_params["id"])


def _with_session(work):
    """An endpoint that runs work(session, request, body) under the session's lock."""

    async def endpoint(request: Request) -> Response:
        identifier = request.path_params["id"]
        entry = request.app.state.store.get(identifier)
        if entry is None:
            return _unknown(identifier)
        body = await _json_body(request) if request.method == "POST" else {}
        if isinstance(body, Response):
            return body
        lock, session = entry

        def locked():
            with lock:
                return work(session, request, body)

        try:
            return await run_in_threadpool(locked)
        except InputError as error:
            return _error(400, str(error), getattr(error, "field", None))

    return endpoint


async def index(request: Request) -> Response:
    return FileResponse(views.STATIC / "index.html", media_type="text/html")


async def get_options(request: Request) -> Response:
    return JSONResponse(options())


def _security_headers(app):
    """ASGI middleware: the page may load and run nothing but this server's own files."""

    async def with_headers(scope, receive, send):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"content-security-policy"]
                policy = dict(message.get("headers", [])).get(b"content-security-policy",
                                                              CONTENT_SECURITY_POLICY.encode())
                headers += [(b"content-security-policy", policy),
                            (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer")]
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_headers)

    return with_headers


def create_app(allowed_hosts=ALLOWED_HOSTS, max_sessions: int = MAX_SESSIONS) -> Starlette:
    """The playground as an ASGI app (uvicorn serves it; starlette's TestClient tests it)."""
    routes = [
        Route("/", index),
        Route("/api/options", get_options),
        Route("/api/sessions", create, methods=["POST"]),
        Route("/api/sessions/{id}/settings", restart, methods=["POST"]),
        Route("/api/sessions/{id}/advance", _with_session(views.advance), methods=["POST"]),
        Route("/api/sessions/{id}/frame", _with_session(views.frame)),
        Route("/api/sessions/{id}/step", _with_session(views.step)),
        Route("/api/sessions/{id}/step/picture", _with_session(views.step_picture)),
        Route("/sessions/{id}/step.html", _with_session(views.step_page)),
        Mount("/static", StaticFiles(packages=[("deltaprop.playground", "static")])),
    ]
    app = Starlette(routes=routes, middleware=[
        Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)),
        Middleware(_security_headers)])
    app.state.store = SessionStore(max_sessions)
    return app


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).version == 4 and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> None:
    """`deltaprop-playground [--host 127.0.0.1] [--port 8765]`: serve the page, print its URL."""
    import jax
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="deltaprop-playground",
        description="Train a small network live in the browser with deltaprop's hand-written "
                    "backprop, and open any step to see every number.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="a loopback address: the playground serves this machine only")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    args = parser.parse_args(argv)
    if not _loopback(args.host):
        parser.error(f"--host {args.host}: the playground serves this machine only; use "
                     "127.0.0.1 (or another 127.x.y.z address, or localhost)")
    host = "127.0.0.1" if args.host == "localhost" else args.host
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((host, args.port))
    except OSError as error:
        parser.exit(2, f"deltaprop-playground: cannot listen on {host}:{args.port}: "
                       f"{error.strerror}; try --port 0 for a free port\n")
    jax.config.update("jax_enable_x64", True)  # the session trains in float64
    port = listener.getsockname()[1]
    print(f"deltaprop playground: http://{host}:{port}/  (Ctrl-C stops it)", flush=True)
    app = create_app(allowed_hosts=sorted({host, *ALLOWED_HOSTS}))
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[listener])
    except KeyboardInterrupt:
        sys.exit(130)
