"""What a learner can set, checked: every value is refused with a message that names its field.

`parse_settings(form)` turns the page's form (a JSON object of strings or numbers) into
`Settings`, or raises `SettingsError(field, message)`. The choices, defaults and limits are
served to the page (`options()`), so the form and the checks cannot disagree.

The limits keep a frame of training small and the step view readable: at most 6 hidden layers
of at most 8 units (as the TensorFlow Playground), 2000 points of synthetic data, a CSV of at
most 5000 rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from deltaprop.choices import ActivationName, LossName
from deltaprop.errors import InputError

# dataset: the synthetic 2-D sets of deltaprop.io.data and its CSV reader, each with its
# default noise (conf/dataset/*.yaml; blobs' noise is the clusters' standard deviation).
DEFAULT_NOISE = {"moons": 0.2, "circles": 0.1, "xor": 0.1, "spirals": 0.1, "blobs": 1.0}
DATASETS = (*DEFAULT_NOISE, "csv")
MAX_HIDDEN_LAYERS, MAX_WIDTH = 6, 8
SAMPLES_RANGE = (20, 2000)
MAX_NOISE = 3.0
MAX_CSV_ROWS, MAX_CSV_FEATURES, MAX_CSV_CHARACTERS = 5000, 50, 2_000_000
MAX_STEPS_PER_FRAME = 200
MAX_SEED = 2**31 - 1

DEFAULTS: dict[str, Any] = {
    "dataset": "moons",
    "n_samples": 400,
    "noise": DEFAULT_NOISE["moons"],
    "csv": "",
    "csv_label": "label",
    "hidden": [6, 6],
    "activation": "tanh",
    "loss": "bce",
    "learning_rate": 0.3,
    "batch_size": 16,
    "seed": 0,
    "steps_per_frame": 10,
}


class SettingsError(InputError):
    """A value the playground cannot use; `field` names the form field at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Settings:
    """One run of the playground: the data, the network, the cost and plain SGD."""

    dataset: str  # one of DATASETS
    n_samples: int  # synthetic data: points drawn (60% train, 20% validation, 20% test)
    noise: float  # synthetic data: the noise of deltaprop.io.data's generator
    csv: str  # dataset=csv: the file's text (header row, numeric columns)
    csv_label: str  # dataset=csv: the 0/1 label column; every other column is a feature
    hidden: tuple[int, ...]  # widths of the hidden layers, n_2..n_{L−1}
    activation: str  # φ of the hidden layers: sigmoid | tanh | relu (the output is σ)
    loss: str  # bce | mse
    learning_rate: float  # η of θ ← θ − η ∂L/∂θ
    batch_size: int  # examples per step; at most the training split
    seed: int  # data, split, initial weights and minibatch order
    steps_per_frame: int  # SGD steps between two pictures while playing


def options() -> dict[str, Any]:
    """The form's choices, defaults and limits, for the page."""
    return {
        "defaults": DEFAULTS,
        "datasets": list(DATASETS),
        "default_noise": DEFAULT_NOISE,
        "activations": list(ActivationName.values()),
        "losses": list(LossName.values()),
        "max_hidden_layers": MAX_HIDDEN_LAYERS,
        "max_width": MAX_WIDTH,
        "samples_range": list(SAMPLES_RANGE),
        "max_noise": MAX_NOISE,
        "max_steps_per_frame": MAX_STEPS_PER_FRAME,
    }


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _choice(form: dict, field: str, choices: tuple[str, ...]) -> str:
    value = form.get(field, DEFAULTS[field])
    if value not in choices:
        raise SettingsError(field, f"{field}={_shown(value)} must be one of {', '.join(choices)}")
    return str(value)


def _number(form: dict, field: str) -> float:
    """The field as a float: a JSON number or a string holding one; never a bool."""
    value = form.get(field, DEFAULTS[field])
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SettingsError(field, f"{field}={_shown(value)} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(field, f"{field}={_shown(value)} is not a number") from None
    if not math.isfinite(number):
        raise SettingsError(field, f"{field}={_shown(value)} must be a finite number")
    return number


def _whole(form: dict, field: str, low: int, high: int) -> int:
    number = _number(form, field)
    if not number.is_integer():
        raise SettingsError(field, f"{field}={_shown(form.get(field))} must be a whole number")
    if not low <= number <= high:
        raise SettingsError(field, f"{field}={int(number)} must be between {low} and {high}")
    return int(number)


def _hidden(form: dict) -> tuple[int, ...]:
    """hidden: a list of widths, or a string "6, 6" ("" or [] for no hidden layer)."""
    value = form.get("hidden", DEFAULTS["hidden"])
    if isinstance(value, str):
        value = [part for part in value.replace(",", " ").split()]
    if not isinstance(value, list):
        raise SettingsError("hidden", f"hidden={_shown(value)} must be a list of widths, e.g. 6, 6")
    widths = []
    for width in value:
        try:
            number = _whole({"hidden": width}, "hidden", 1, MAX_WIDTH)
        except SettingsError:
            raise SettingsError(
                "hidden", f"hidden={_shown(form.get('hidden'))}: each width must be a whole "
                f"number from 1 to {MAX_WIDTH}, got {_shown(width)}") from None
        widths.append(number)
    if len(widths) > MAX_HIDDEN_LAYERS:
        raise SettingsError("hidden", f"hidden={_shown(form.get('hidden'))} has {len(widths)} "
                            f"layers; at most {MAX_HIDDEN_LAYERS}")
    return tuple(widths)


def _csv(form: dict, dataset: str) -> tuple[str, str]:
    text, label = form.get("csv", ""), form.get("csv_label", DEFAULTS["csv_label"])
    if not isinstance(text, str) or not isinstance(label, str):
        raise SettingsError("csv", "csv and csv_label must be text")
    if dataset != "csv":
        return "", label
    if not text.strip():
        raise SettingsError("csv", "dataset=csv: choose a CSV file (a header row, numeric columns)")
    if len(text) > MAX_CSV_CHARACTERS:
        raise SettingsError("csv", f"csv: the file has {len(text)} characters; at most "
                            f"{MAX_CSV_CHARACTERS}")
    if not label.strip():
        raise SettingsError("csv_label", "csv_label is empty: name the 0/1 label column")
    return text, label.strip()


def parse_settings(form: dict[str, Any]) -> Settings:
    """Settings from the page's form; a missing field takes its default.

    Raises:
      SettingsError: the first bad field, named with its value and what it must be. The batch
        size is checked against the training split later (`problem.load_problem`).
    """
    if not isinstance(form, dict):
        raise SettingsError("settings", "the settings must be a JSON object")
    unknown = sorted(set(form) - set(DEFAULTS))
    if unknown:
        raise SettingsError(unknown[0], f"unknown setting {unknown[0]!r}; the settings are "
                            f"{', '.join(DEFAULTS)}")
    dataset = _choice(form, "dataset", DATASETS)
    csv_text, csv_label = _csv(form, dataset)
    noise = _number(form, "noise")
    if not 0 <= noise <= MAX_NOISE:
        raise SettingsError("noise", f"noise={noise:g} must be between 0 and {MAX_NOISE:g}")
    learning_rate = _number(form, "learning_rate")
    if not learning_rate > 0:
        raise SettingsError("learning_rate", f"learning_rate={learning_rate:g} must be > 0")
    return Settings(
        dataset=dataset,
        n_samples=_whole(form, "n_samples", *SAMPLES_RANGE),
        noise=noise,
        csv=csv_text,
        csv_label=csv_label,
        hidden=_hidden(form),
        activation=_choice(form, "activation", ActivationName.values()),
        loss=_choice(form, "loss", LossName.values()),
        learning_rate=learning_rate,
        batch_size=_whole(form, "batch_size", 1, 10**6),
        seed=_whole(form, "seed", 0, MAX_SEED),
        steps_per_frame=_whole(form, "steps_per_frame", 1, MAX_STEPS_PER_FRAME),
    )
