"""The vanishing gradient, measured from epoch 0: one seed sweep per hidden activation.

    python experiments/vanishing_gradients.py experiment=vanishing_gradients logger=none \
        vanishing_gradients.figure=docs/vanishing_gradients.png

Trains the configured run (experiment=vanishing_gradients: [64, 30, 30, 30, 30, 1] on the digits,
odd vs even) once per `vanishing_gradients.activations` (sigmoid, tanh, relu), each as one sweep
of `vanishing_gradients.seeds` seeds (trainer.num_seeds) under <run dir>/<activation>/. Writes
<run dir>/vanishing_gradients.png (per layer ‖δ_l‖, ‖∂L/∂b_l‖ and rms ∂L/∂W_l, and the training
loss; median and min–max over the seeds; also to vanishing_gradients.figure when set) and
<run dir>/vanishing_gradients.json (the table it prints: spreads at initialization beside the
spectral-norm bound, the bias-gradient ratio, the plateau's length). Exit codes: 0 done, 2 bad
input, 3 every member of a sweep diverged.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from deltaprop.cli import hydra_app
from deltaprop.io import plots
from deltaprop.io.files import write_json
from deltaprop.population import initial_params
from deltaprop.precision import precision_of
from deltaprop.run.setup import network_sizes, prepare_data, resolve_run_dir
from deltaprop.run.train import train
from deltaprop.teaching.vanishing_gradients import format_summaries, summarize

log = logging.getLogger("deltaprop.vanishing_gradients")


def sweep_histories(cfg: DictConfig, activation: str, run_dir: Path) -> tuple[list, list]:
    """Train the configured run with hidden `activation` as one sweep of the configured seeds
    into `run_dir`; the histories and initial parameters of its members that did not diverge."""
    run = cfg.copy()
    run.model.activation, run.trainer.num_seeds = activation, cfg.vanishing_gradients.seeds
    run.run_dir, run.print_config = str(run_dir), False
    train(run)
    members = json.loads((run_dir / "members.json").read_text())
    finite = [member for member in members if not member["diverged"]]
    if len(finite) < len(members):
        log.info(f"{activation}: {len(members) - len(finite)} of {len(members)} members "
                 "diverged and are left out")
    histories = [[json.loads(line) for line in (run_dir / "members" / f"member_{m['member']}" /
                                                "metrics.jsonl").read_text().splitlines()]
                 for m in finite]
    sizes = network_sizes(run, prepare_data(run))
    dtype = precision_of(run.trainer.precision).dtype
    params = [initial_params(member["seed"], sizes, run.model.init, dtype) for member in finite]
    return histories, params


def vanishing_gradients(cfg: DictConfig) -> list[dict[str, Any]]:
    """Every activation's sweep, the figure and the table; returns the table's rows."""
    from deltaprop.io.config import ConfigError

    settings = cfg.vanishing_gradients
    if settings.seeds < 1 or settings.plateau_margin < 0 or not settings.activations:
        raise ConfigError(f"vanishing_gradients: seeds={settings.seeds} must be >= 1, "
                          f"plateau_margin={settings.plateau_margin} >= 0, activations="
                          f"{list(settings.activations)} not empty")
    run_dir = resolve_run_dir(cfg)
    runs, summaries = {}, []
    for activation in map(str, settings.activations):
        histories, params = sweep_histories(cfg, activation, run_dir / activation)
        runs[activation] = histories
        summaries.append(summarize(activation, histories, params, activation,
                                   settings.plateau_margin))
    figure = plots.plot_vanishing_gradients(runs, run_dir / "vanishing_gradients.png")
    if settings.figure:
        Path(settings.figure).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(figure, settings.figure)
    write_json(run_dir / "vanishing_gradients.json", summaries)
    log.info(format_summaries(summaries))
    log.info(f"figure: {figure}" + (f" and {settings.figure}" if settings.figure else ""))
    return summaries


def main(cfg: DictConfig) -> None:
    """The Hydra task: exit 2 on bad input, 3 when a sweep diverged entirely."""
    from deltaprop.cli import fail
    from deltaprop.errors import EXIT_BAD_INPUT, EXIT_DIVERGED, InputError
    from deltaprop.io.console import console_output
    from deltaprop.nan_guard import TrainingDiverged

    with console_output():
        try:
            vanishing_gradients(cfg)
        except InputError as error:
            fail(error, EXIT_BAD_INPUT)
        except TrainingDiverged as error:
            fail(error, EXIT_DIVERGED)


if __name__ == "__main__":
    hydra_app(main, "vanishing_gradients")(
        config_path=str(Path(__file__).resolve().parents[1] / "conf")
    )
