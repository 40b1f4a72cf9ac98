"""A page that steps through training: one self-contained HTML file, no server, no network.

`format_page(history)` renders a `TrainingHistory` (history.py) as backprop.html:

- the network picture of svg.py, whose numbers the page's script (static/page.js) rewrites for
  the state in the URL fragment, `#step=3&phase=backward&layer=4&example=1`, showing each
  number only once its phase has computed it; it opens at the forward pass, layer 2, of step 0;
- controls: previous / next (the forward pass layer by layer, the backward pass from the output
  layer down, the update, then the next step; disabled at the two ends), the phase links, a
  slider over the T training steps, the example shown when N > 1;
- the equation of the current phase in the code's row form and the textbook's column form;
- charts over the steps: the loss, ‖δ_l‖ per layer (log scale, its ticks powers of ten written
  as numbers: the vanishing δ) and the mean σ'(z_l) per hidden layer (at most 1/4; lower as
  units saturate).

The numbers are the history's, embedded as JSON (`page_data`); the page loads nothing (a
Content-Security-Policy of default-src 'none' forbids it) and computes nothing but formatting.
"""

from __future__ import annotations

import json
import math
from html import escape
from typing import Any

import numpy as np

from deltaprop.teaching import svg
from deltaprop.teaching.arithmetic import DEFAULT_DIGITS
from deltaprop.teaching.history import TrainingHistory
from deltaprop.teaching.page_script import SCRIPT

CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 400, 180, 48
SERIES_COLOURS = ("#1d4ed8", "#b45309", "#047857", "#7c3aed", "#be123c", "#0e7490", "#4d7c0f")
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"
)
PAGE_STYLE = """
body{font-family:'DejaVu Sans',Arial,sans-serif;margin:16px 24px;color:#111;max-width:1500px}
h1{font-size:20px;margin:0 0 4px}p{margin:4px 0}
#controls{display:flex;gap:12px;align-items:center;flex-wrap:wrap;margin:10px 0}
button{font-size:14px;padding:4px 12px}#phase-label{font-weight:bold;min-width:190px}
#phases{display:flex;flex-wrap:wrap;gap:6px;list-style:none;padding:0;margin:6px 0}
#phases a{padding:2px 8px;border:1px solid #cbd5e1;border-radius:10px;text-decoration:none;
color:#1f2937;font-size:12px}#phases a.current{background:#1f2937;color:#fff}
#equations{font-family:'DejaVu Sans Mono',monospace;font-size:14px;background:#f8fafc;
border:1px solid #e2e8f0;padding:6px 10px;margin:6px 0}
#equations span{color:#64748b;display:inline-block;width:230px}#equations sub,#equations sup{font-size:0.8em}
rect.column.current{fill:#fef9c3;fill-opacity:0.6}
#charts{display:flex;gap:18px;flex-wrap:wrap}#status{font-size:13px;color:#334155}
#network{overflow-x:auto}#network svg{max-width:100%;height:auto}
button:disabled{opacity:0.4}
"""


def _nested(array: np.ndarray) -> list:
    return np.asarray(array, np.float64).tolist()


def page_data(history: TrainingHistory, digits: int = DEFAULT_DIGITS) -> dict[str, Any]:
    """Everything the page shows, as JSON-able lists: per layer l = 2..L its W, b (T + 1
    states), z, a, δ (T, N, n_l) and gradients (T states); the losses and the check errors."""
    layers = [
        {
            "layer": index + 2,
            "W": _nested(history.weights[index]),
            "b": _nested(history.biases[index]),
            "z": _nested(history.pre_activations[index]),
            "a": _nested(history.activations[index]),
            "delta": _nested(history.deltas[index]),
            "grad_W": _nested(history.grad_weights[index]),
            "grad_b": _nested(history.grad_biases[index]),
        }
        for index in range(len(history.sizes) - 1)
    ]
    style = {"positive": svg.POSITIVE, "negative": svg.NEGATIVE, "neutral": svg.NEUTRAL,
             "min_opacity": svg.MIN_OPACITY, "min_width": svg.MIN_WIDTH,
             "max_width": svg.MAX_WIDTH, "radius": svg.RADIUS}
    return {
        "sizes": list(history.sizes),
        "digits": int(digits),
        "steps": history.steps,
        "n_examples": int(history.x.shape[0]),
        "learning_rate": history.learning_rate,
        "x": _nested(history.x),
        "y": _nested(history.y),
        "layers": layers,
        "losses": _nested(history.losses),
        "errors": _nested(history.errors),
        "tolerance": history.tolerance,
        "style": style,
    }


def _power_of_ten(exponent: int) -> str:
    """10^k as a number: 1, 0.1, 0.001, 0.0001, 1e-05."""
    return f"{10.0**exponent:g}"


def _log_ticks(low: float, high: float, room: float) -> list[tuple[float, str]]:
    """Ticks of a log axis from 10^low to 10^high, as (log10 value, label written as a number):
    the powers of ten inside (every k-th, to stay `room` apart), else the two ends."""
    decades = list(range(math.ceil(low - 1e-9), math.floor(high + 1e-9) + 1))
    if len(decades) < 2:
        return [(low, f"{10.0**low:.2g}"), (high, f"{10.0**high:.2g}")]
    decade = (CHART_HEIGHT - 2 * CHART_PAD) / (high - low)  # px between powers of ten
    every = max(1, math.ceil(room / decade))
    return [(k, _power_of_ten(k)) for k in decades[::every]]


def _apart(positions: list[float], gap: float) -> list[float]:
    """The positions, moved down as little as needed to be at least `gap` apart (in order)."""
    order, moved, last = np.argsort(positions), list(positions), -math.inf
    for index in order:
        moved[index] = max(positions[index], last + gap)
        last = moved[index]
    return moved


def _chart(title: str, series: list[tuple[str, np.ndarray]], log: bool, steps: int,
           ceiling: float | None = None) -> str:
    """A line chart over the steps t = 0..T − 1, with a cursor line the script moves."""
    values = np.concatenate([np.asarray(v, np.float64) for _, v in series])
    if log:
        values = np.log10(np.maximum(values, 1e-300))
    low, high = float(np.min(values)), float(np.max(values))
    if ceiling is not None:
        high = max(high, ceiling)
    low, high = (low - 0.5, high + 0.5) if high - low < 1e-12 else (low, high)
    dx = (CHART_WIDTH - 2 * CHART_PAD) / max(steps - 1, 1)
    y_of = lambda v: CHART_HEIGHT - CHART_PAD - (v - low) / (high - low) * (
        CHART_HEIGHT - 2 * CHART_PAD)
    parts = [(f'<svg class="chart" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" '
             f'viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}">'),
             f'<text x="4" y="16" font-size="13" font-weight="bold">{escape(title)}</text>']
    ends = []
    for index, (label, line) in enumerate(series):
        points = np.log10(np.maximum(line, 1e-300)) if log else np.asarray(line, np.float64)
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        path = " ".join(f"{CHART_PAD + t * dx:.1f},{y_of(v):.1f}" for t, v in enumerate(points))
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        ends.append((y_of(points[-1]) + 4, label, colour))
    for y, (_, label, colour) in zip(_apart([y for y, _, _ in ends], 14), ends, strict=True):
        parts.append(f'<text x="{CHART_WIDTH - CHART_PAD + 4}" y="{y:.1f}" font-size="12" '
                     f'fill="{colour}">{escape(label)}</text>')
    if ceiling is not None:
        parts.append(f'<line x1="{CHART_PAD}" x2="{CHART_WIDTH - CHART_PAD}" y1="{y_of(ceiling):.1f}" '
                     f'y2="{y_of(ceiling):.1f}" stroke="#94a3b8" stroke-dasharray="4 3"/>')
    ticks = (_log_ticks(low, high, room=15) if log
             else [(low, f"{low:.3g}"), (high, f"{high:.3g}")])
    for value, label in ticks:
        y = y_of(value)
        parts += [(f'<line x1="{CHART_PAD - 4}" x2="{CHART_PAD}" y1="{y:.1f}" y2="{y:.1f}" '
                   'stroke="#64748b"/>'),
                  (f'<text x="{CHART_PAD - 6}" y="{y + 4:.1f}" font-size="12" '
                   f'text-anchor="end">{label}</text>')]
    parts += [
        f'<text x="{CHART_PAD}" y="{CHART_HEIGHT - 12}" font-size="12">step 0</text>',
        (f'<text x="{CHART_WIDTH - CHART_PAD}" y="{CHART_HEIGHT - 12}" font-size="12" '
        f'text-anchor="end">step {steps - 1}</text>'),
        (f'<line class="cursor" data-x0="{CHART_PAD}" data-dx="{dx:.6f}" x1="{CHART_PAD}" '
        f'x2="{CHART_PAD}" y1="{CHART_PAD - 10}" y2="{CHART_HEIGHT - CHART_PAD}" '
        'stroke="#111" stroke-width="1"/>'),
        "</svg>",
    ]
    return "\n".join(parts)


def _charts(history: TrainingHistory) -> str:
    steps, last = history.steps, len(history.sizes)
    norms, slopes = history.delta_norms(), history.mean_sigmoid_slopes()
    charts = [
        _chart("loss L", [("L", history.losses[:steps])], log=False, steps=steps),
        _chart("‖δ‖ of each layer (log scale): the vanishing δ",
               [(f"δ{svg.subscript(layer)}", norms[:, layer - 2]) for layer in range(2, last + 1)],
               log=True, steps=steps),
    ]
    if slopes.shape[1]:
        charts.append(_chart("mean σ'(z) = a(1 − a) per hidden layer, ≤ 1/4",
                             [(f"σ'{svg.subscript(layer)}", slopes[:, layer - 2])
                              for layer in range(2, last)],
                             log=False, steps=steps, ceiling=0.25))
    return "\n".join(charts)


def _controls(history: TrainingHistory) -> str:
    last, n_examples = len(history.sizes), history.x.shape[0]
    phases = [("forward", layer) for layer in range(2, last + 1)]
    phases += [("backward", layer) for layer in range(last, 1, -1)] + [("update", None)]
    links = "".join(
        f'<li><a data-phase="{phase}"' + (f' data-layer="{layer}"' if layer else "") + ">"
        + (f"{phase} · layer {layer}" if layer else "update") + "</a></li>"
        for phase, layer in phases
    )
    example = ""
    if n_examples > 1:
        options = "".join(f'<option value="{n + 1}">{n + 1}</option>' for n in range(n_examples))
        example = f'<label>example <select id="example">{options}</select></label>'
    return (
        '<div id="controls"><button id="previous">◀ previous</button>'
        '<button id="next">next ▶</button><span id="phase-label"></span>'
        f'<label>training step <input type="range" id="step" min="0" max="{history.steps - 1}" '
        f'value="0"> <output id="step-label">0</output> of 0..{history.steps - 1}</label>'
        f"{example}</div>"
        f'<ol id="phases">{links}</ol>'
    )


def _json_for_script(data: dict[str, Any]) -> str:
    """JSON safe inside <script>: no NaN or inf (strict JSON), no "</" to end the element."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def format_page(history: TrainingHistory, digits: int = DEFAULT_DIGITS, source: str = "") -> str:
    """The page as one HTML string; `source` says where x and y come from."""
    sizes = "-".join(str(n) for n in history.sizes)
    picture = svg.format_svg(svg.picture_at_step(history, 0), digits)
    worst = float(np.max(history.errors))
    source = f" ({escape(source)})" if source else ""
    summary = (
        f"A {len(history.sizes)}-layer sigmoid network {sizes} with binary cross-entropy, "
        f"N = {history.x.shape[0]} example{'s' if history.x.shape[0] > 1 else ''}{source}, "
        "plain gradient descent with "
        f"η = {history.learning_rate:g}, steps 0 to {history.steps - 1}. Every number is "
        "deltaprop.backprop.backprop_trace's (float64, jitted), rounded to "
        f"{digits} significant digits; ∂L/∂θ and δ_l agree with jax.grad at every step "
        f"to a relative error of {worst:.1e} {'✓' if history.passed else '✗'}."
    )
    return "\n".join([
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        f"<title>Backpropagation step by step: {sizes}</title>",
        f"<style>{PAGE_STYLE}</style></head><body>",
        "<h1>Backpropagation, step by step</h1>",
        f"<p>{summary}</p>",
        _controls(history),
        ('<div id="equations"><div><span>code (row form, mean loss)</span>'
        '<code id="equation-code"></code></div><div><span>textbook (column form)</span>'
        '<code id="equation-textbook"></code></div></div>'),
        f'<div id="network">{picture}</div>',
        '<p id="status"></p>',
        f'<div id="charts">{_charts(history)}</div>',
        ("<p>The keys ← → step through the phases; the URL fragment "
        "(#step=…&amp;phase=…&amp;layer=…&amp;example=…) names the state shown, so any state can "
        "be bookmarked.</p>"),
        f'<script type="application/json" id="deltaprop-data">{_json_for_script(page_data(history, digits))}</script>',
        f"<script>{SCRIPT}</script>",
        "</body></html>",
        "",
    ])
