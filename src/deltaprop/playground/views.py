"""What each request answers, from a session: JSON frames, the step record, the pictures.

The worked example's renderers draw the step: `deltaprop.teaching.svg.format_svg` the network
picture of one example of the minibatch (any φ and cost: the numbers are the step's), and for
sigmoid hidden layers with BCE, the case the worked example is written for, the whole page of
`deltaprop.teaching.page.format_page` over `deltaprop.teaching.history.training_history` of
the step (one update of θ_t on B_t, checked against jax.grad by the history itself).
"""

from __future__ import annotations

import dataclasses
from importlib.resources import files

import numpy as np
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from deltaprop.playground.session import TrainingSession
from deltaprop.playground.settings import MAX_STEPS_PER_FRAME, SettingsError
from deltaprop.playground.step import StepRecord, picture, record_json
from deltaprop.teaching import svg
from deltaprop.teaching.history import training_history
from deltaprop.teaching.page import CONTENT_SECURITY_POLICY, format_page

STATIC = files("deltaprop.playground") / "static"


def worked_example_covers(session: TrainingSession) -> bool:
    """The worked example's page is written for sigmoid hidden layers and BCE."""
    return session.settings.activation == "sigmoid" and session.settings.loss == "bce"


def full_frame(session: TrainingSession) -> dict:
    """The frame, the data points and the settings in force: all a page needs to draw."""
    settings = dataclasses.asdict(session.settings)
    settings.update(hidden=list(session.settings.hidden), csv="")  # the CSV stays here
    return {**session.frame(), "data": session.data(), "settings": settings}


def advance(session: TrainingSession, request: Request, body: dict) -> Response:
    steps = body.get("steps", session.settings.steps_per_frame)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS_PER_FRAME:
        raise SettingsError("steps", f"steps={steps!r} must be a whole number from 1 to "
                            f"{MAX_STEPS_PER_FRAME}")
    session.advance(steps)
    return JSONResponse(session.frame())


def frame(session: TrainingSession, request: Request, body: dict) -> Response:
    return JSONResponse(full_frame(session))


def _finite_step(session: TrainingSession) -> StepRecord:
    """The current step, or SettingsError when a number of it is not finite (JSON has no NaN;
    the worked example's page refuses one): at a learning rate that large, say so."""
    record = session.current_step()
    arrays = [array for layer in record.layers for array in vars(layer).values()
              if isinstance(array, np.ndarray)]
    if not all(np.all(np.isfinite(a)) for a in arrays) or not np.isfinite(record.loss_after):
        raise SettingsError("learning_rate", f"step {record.step} overflows at learning_rate="
                            f"{session.settings.learning_rate:g}: its update is not finite; "
                            "lower the learning rate to see a step")
    return record


def step(session: TrainingSession, request: Request, body: dict) -> Response:
    record = _finite_step(session)
    return JSONResponse({**record_json(record), "worked_example_page": worked_example_covers(session)})


def _example(request: Request, n_examples: int) -> int:
    """?example=n, 1-based, as a 0-based index; SettingsError naming `example` otherwise."""
    text = request.query_params.get("example", "1")
    if not text.isdigit() or not 1 <= int(text) <= n_examples:
        raise SettingsError("example", f"example={text!r} must be a whole number from 1 to "
                            f"{n_examples} (the minibatch)")
    return int(text) - 1


def step_picture(session: TrainingSession, request: Request, body: dict) -> Response:
    record = _finite_step(session)
    n = _example(request, record.x.shape[0])
    return Response(svg.format_svg(picture(record, n)), media_type="image/svg+xml")


def step_page(session: TrainingSession, request: Request, body: dict) -> Response:
    """The worked example's page of the current step (sigmoid + BCE only)."""
    s = session.settings
    if not worked_example_covers(session):
        raise SettingsError("activation", f"the worked example's page is written for sigmoid "
                            f"hidden layers and bce; this run uses {s.activation} and {s.loss}")
    record = _finite_step(session)
    history = training_history(session.params, record.x, record.y, s.learning_rate, steps=1)
    source = (f"the minibatch of step {record.step}: {record.x.shape[0]} rows of the "
              f"standardized {s.dataset} training split")
    return HTMLResponse(format_page(history, source=source),
                        headers={"content-security-policy": CONTENT_SECURITY_POLICY})
