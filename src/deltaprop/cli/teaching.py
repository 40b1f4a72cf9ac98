"""The teaching commands' bodies: each reads its config once and runs the library on the
network and data a training run of the same config would start from.

    gradcheck            deltaprop-gradcheck: manual_grad against jax.grad and finite differences
    worked_example       deltaprop-worked-example: every number of one step (and the page)
    speed_of_learning    deltaprop-speed-of-learning: Nielsen's ‖∂C/∂b^l‖ per hidden layer
    learning_slowdown    deltaprop-learning-slowdown: one neuron, both costs
    vanishing_gradients  deltaprop-vanishing-gradients: one seed sweep per activation

Each raises InputError on bad input (the command prints one line and exits 2).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

from deltaprop.errors import EXIT_GRADCHECK_FAILED, ConfigError
from deltaprop.gradient_check import GRADCHECK_BATCH, GradcheckReport
from deltaprop.gradient_check import gradcheck as check
from deltaprop.io.data import Splits, load_dataset
from deltaprop.io.files import ensure_writable_directory, write_json
from deltaprop.model import Model
from deltaprop.network import Params
from deltaprop.population import Member, initial_params
from deltaprop.precision import float64_scope, precision_of, precision_scope
from deltaprop.run.config import read
from deltaprop.run.engines import EngineSpec, make_engine
from deltaprop.run.setup import cast_splits, model_of, prepare_data, resolve_run_dir
from deltaprop.settings import (
    GradcheckSettings,
    LearningSlowdownSettings,
    SpeedOfLearningSettings,
    TrainSettings,
    VanishingGradientsSettings,
    WorkedExampleSettings,
)
from deltaprop.training import batches_per_epoch

log = logging.getLogger("deltaprop.teaching")


# ------------------------------------------------------------------------ trained parameters


def trained_params(settings: TrainSettings, splits: Splits, model: Model, epochs: int) -> Params:
    """The parameters a training run of these settings has after `epochs` epochs: the same
    initialization, data order, optimizer and trainer.grad (a single run: seed, optimizer.lr),
    through the same compiled engine, without its outputs.

    Raises:
      ConfigError: the parameters stopped being finite (training diverged).
    """
    trainer, precision = settings.trainer, precision_of(settings.trainer.precision)
    steps = batches_per_epoch(splits.x_train.shape[0], trainer.batch_size, trainer.limit_batches)
    # The schedule spans the run (or the epochs asked, if longer), as in training.
    engine = make_engine(EngineSpec.create(
        settings.optimizer, steps, max(trainer.epochs, epochs), layout="single", model=model,
        precision=precision, grad=str(trainer.grad), batch_size=trainer.batch_size,
        limit_batches=trainer.limit_batches))
    member = Member(0, settings.seed, settings.optimizer.lr, settings.optimizer.weight_decay,
                    settings.optimizer.momentum_value, settings.model.init_scale)
    with precision_scope(precision.name):
        arrays = cast_splits(splits, precision.dtype)
        state = engine.init([member])
        for _ in range(epochs):
            state, _, _ = engine.epoch(state, arrays["x_train"], arrays["y_train"])
        params = jax.tree.map(np.asarray, state.params)
    if not all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params)):
        raise ConfigError(
            f"gradcheck.after_epochs={epochs}: the parameters stopped being finite during "
            f"training (optimizer.lr={settings.optimizer.lr}); lower the learning rate or the "
            "epochs")
    return params


# ------------------------------------------------------------------------ deltaprop-gradcheck


def gradcheck_report(settings: GradcheckSettings, params: Params | None = None
                     ) -> GradcheckReport:
    """Gradient check of the configured network on the first GRADCHECK_BATCH training examples.

    It checks at `params` if given, else after gradcheck.after_epochs epochs of the configured
    training (`trained_params`), else at the initial parameters; the gradient under check is
    manual_grad, with the mistake gradcheck.inject if one is asked (deltaprop.teaching.bugs).
    The report's heading says which.

    Raises:
      InputError: bad data; a bug the network has no place for; training that diverged.
    """
    from deltaprop.teaching.bugs import Bug, describe_bug, gradient_with_bug

    splits = prepare_data(settings)
    model = model_of(settings, splits)
    bug, epochs = Bug(settings.gradcheck.inject), settings.gradcheck.after_epochs
    if bug is not Bug.none and model.names != {"loss": "bce", "activation": "sigmoid"}:
        raise ConfigError(
            f"gradcheck.inject={bug} is written for sigmoid layers and BCE, not "
            f"loss={settings.loss} model.activation={settings.model.activation}")
    gradient, bug_layer = gradient_with_bug(bug, model.sizes)  # InputError before any training
    if params is not None:
        where = "at the given parameters"
    elif epochs:
        params = trained_params(settings, splits, model, epochs)
        where = (f"after {epochs} epoch{'s' * (epochs != 1)} of training "
                 f"(optimizer={settings.optimizer.name}, lr={settings.optimizer.lr}, "
                 f"seed {settings.seed})")
    else:
        params = initial_params(settings.seed, model.sizes, model.init, jnp.float32,
                                settings.model.init_scale)
        where = f"at initialization (model.init={model.init}, seed {settings.seed})"
    x, y = splits.x_train[:GRADCHECK_BATCH], splits.y_train[:GRADCHECK_BATCH]
    heading = [(f"{where}: network {list(model.sizes)}, loss={model.loss}, model.activation="
                f"{model.activation}, {len(x)} training examples of "
                f"dataset={settings.dataset.name}")]
    if bug is not Bug.none:
        heading.append(f"injected bug gradcheck.inject={bug} in layer {bug_layer}: "
                       f"{describe_bug(bug, bug_layer)}")
    report = check(params, x, y, gradient_fn=None if bug is Bug.none else gradient,
                   loss=model.loss, activation=model.activation)
    return dataclasses.replace(report, heading="\n".join(heading))


def gradcheck(cfg: DictConfig) -> None:
    report = gradcheck_report(read(cfg, GradcheckSettings))
    log.info(report.format_table())  # the console and gradcheck.log
    if not report.passed:
        sys.exit(EXIT_GRADCHECK_FAILED)


# ------------------------------------------------------------------ deltaprop-worked-example

BY_HAND_EXPERIMENT = "worked_example_by_hand"


def worked_example_inputs(settings: TrainSettings | DictConfig, batch: int
                          ) -> tuple[Params, np.ndarray, np.ndarray]:
    """(params, x, y) as a training run would start: float64 params, first batch (`settings`:
    the settings or the composed config, e.g. deltaprop.compose("experiment=worked_example")).

    The data are `dataset` split and standardized as in training (dataset=xor_table: the
    truth table itself, as a textbook writes it); the params are the initial parameters of
    `seed`; x, y are the first `batch` examples.

    Raises:
      ConfigError: batch outside 1..the number of examples.
    """
    if not isinstance(settings, TrainSettings):  # the worked example's composed config
        settings = read(settings, WorkedExampleSettings)
    if settings.dataset.name == "xor_table":
        data = load_dataset(settings.dataset, settings.data_seed)
        x_all, y_all = data.x, data.y
    else:
        splits = prepare_data(settings)
        x_all, y_all = splits.x_train, splits.y_train
    n_examples = x_all.shape[0]
    if not 1 <= batch <= n_examples:
        raise ConfigError(f"worked_example.batch={batch} must be between 1 and the "
                          f"{n_examples} examples of dataset={settings.dataset.name}")
    sizes = [x_all.shape[1], *settings.model.hidden, y_all.shape[1]]
    with float64_scope():
        params = initial_params(settings.seed, sizes, settings.model.init, jnp.float64,
                                settings.model.init_scale)
        params = jax.tree.map(np.asarray, params)
    return params, x_all[:batch], y_all[:batch]


def _with_by_hand_experiment(cfg: DictConfig) -> DictConfig:
    """mode=by_hand and no experiment= on the command line: compose again with the by-hand
    experiment, keeping the command line's overrides (they win over the experiment's values)."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    overrides = list(HydraConfig.get().overrides.task)
    named = any(o.lstrip("+~").startswith("experiment=") for o in overrides)
    if cfg.worked_example.mode != "by_hand" or named:
        return cfg
    return compose(config_name="worked_example",
                   overrides=[f"experiment={BY_HAND_EXPERIMENT}", *overrides])


def worked_example(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from deltaprop.teaching.history import training_history
    from deltaprop.teaching.page import format_page
    from deltaprop.teaching.render import format_console, format_markdown
    from deltaprop.teaching.svg import format_svg, picture_of_example
    from deltaprop.teaching.worked_example import worked_example as compute

    settings = read(_with_by_hand_experiment(cfg), WorkedExampleSettings)
    if settings.loss != "bce" or settings.model.activation != "sigmoid":
        raise ConfigError(f"the worked example shows sigmoid layers and BCE (δ_L = a_L − y), "
                          f"not loss={settings.loss} model.activation={settings.model.activation}")
    options, lr = settings.worked_example, settings.optimizer.lr
    params, x, y = worked_example_inputs(settings, options.batch)
    by_hand, digits = options.mode == "by_hand", options.digits
    source = ("the XOR truth table, as it is" if settings.dataset.name == "xor_table" else
              f"the first standardized training examples of dataset={settings.dataset.name}")
    example = compute(params, x, y, lr, data=source)
    log.info(format_console(example, digits, by_hand=by_hand))  # console, worked_example.log
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    outputs = [  # (what, file name, text)
        ("report", "worked_example.md",
         format_markdown(example, digits, by_hand, picture="network.svg")),
        ("picture", "network.svg", format_svg(picture_of_example(example), digits)),
    ]
    passed = example.passed
    if options.page:
        history = training_history(params, x, y, lr, options.page_steps)
        outputs.append(("page", "backprop.html", format_page(history, digits, source)))
        passed = passed and history.passed
    log.info("")
    for what, name, text in outputs:
        (run_dir / name).write_text(text, encoding="utf-8")
        log.info(f"{what}: {run_dir / name}")
    if not passed:
        sys.exit(EXIT_GRADCHECK_FAILED)


# ------------------------------------------------------------- deltaprop-speed-of-learning


def speed_of_learning_rows(settings: SpeedOfLearningSettings) -> list:
    """The table for the configured data (its standardized training split, first
    speed_of_learning.n_images rows), model.init and speed_of_learning.seeds seeds from `seed`;
    with speed_of_learning.train_epochs = E also after 1..E epochs of the configured training.

    Raises:
      InputError: bad data.
    """
    from deltaprop.teaching.speed_of_learning import speed_table

    options = settings.speed_of_learning
    splits = prepare_data(settings)
    n_images = min(options.n_images, splits.x_train.shape[0])
    if n_images < options.n_images:
        log.info(f"speed_of_learning.n_images={options.n_images}: the training split has "
                 f"{n_images} images; using them all")
    x, y = splits.x_train[:n_images], splits.y_train[:n_images]
    seeds = [settings.seed + offset for offset in range(options.seeds)]

    def after(epochs: int):
        def params_of(seed: int, sizes: list[int]) -> Params:
            run = dataclasses.replace(settings, seed=seed, model=dataclasses.replace(
                settings.model, hidden=tuple(sizes[1:-1])))
            return trained_params(run, splits, model_of(run, splits), epochs)

        return params_of

    rows = []
    with float64_scope():
        for epoch in range(options.train_epochs + 1):
            rows += speed_table(x, y, [list(h) for h in options.hidden], seeds,
                                after(epoch) if epoch else None, epoch=epoch,
                                init=str(settings.model.init))
    return rows


def speed_of_learning(cfg: DictConfig) -> None:
    from deltaprop.teaching.speed_of_learning import format_table

    settings = read(cfg, SpeedOfLearningSettings)
    rows = speed_of_learning_rows(settings)
    options = settings.speed_of_learning
    log.info(f"speed of learning, dataset={settings.dataset.name}, model.init="
             f"{settings.model.init}, {options.seeds} seeds from seed {settings.seed}, "
             f"{options.n_images} training images")
    log.info(format_table(rows))


# ------------------------------------------------------------- deltaprop-learning-slowdown


def learning_slowdown(cfg: DictConfig) -> dict[str, Any]:
    """Train Nielsen's neuron with both costs; print the measures, write learning_slowdown.png
    and learning_slowdown.json to the run directory. Returns the JSON."""
    from deltaprop.io.plots import plot_learning_slowdown
    from deltaprop.teaching import learning_slowdown as slowdown

    settings = read(cfg, LearningSlowdownSettings)
    options = settings.learning_slowdown
    x, y, threshold, lr = options.x, options.y, options.threshold, settings.optimizer.lr
    runs = slowdown.slowdown_runs([list(start) for start in options.starts], x, y, lr,
                                  options.epochs)
    run_dir = resolve_run_dir(settings, "learning_slowdown")
    ensure_writable_directory(run_dir)
    title = f"one sigmoid neuron, x = {x:g} -> y = {y:g}, eta = {lr:g}"
    figure = plot_learning_slowdown(
        {slowdown.run_label(run): {"cost": run.cost, "output": run.output} for run in runs},
        run_dir / slowdown.FIGURE_NAME, title=title)
    data = slowdown.curves_json(runs, {"x": x, "y": y, "learning_rate": lr,
                                       "epochs": options.epochs, "threshold": threshold},
                                y, threshold, options.report_epoch)
    written = write_json(run_dir / slowdown.CURVES_NAME, data)
    log.info(f"learning slowdown: {title}, {options.epochs} epochs, gradients by manual_grad")
    log.info("\n".join(slowdown.summary_lines(runs, y, threshold, options.report_epoch)))
    log.info(f"figure: {figure.resolve()}\ncurves: {written.resolve()}")
    return data


# ------------------------------------------------------------ deltaprop-vanishing-gradients


def vanishing_gradients(cfg: DictConfig) -> list[dict[str, Any]]:
    """Train the configured run once per vanishing_gradients.activations, each as one sweep of
    vanishing_gradients.seeds seeds under <run dir>/<activation>/; draw the figure and print
    the table (spreads at initialization beside the spectral-norm bound, the bias-gradient
    ratio, the plateau's length). Returns the table's rows."""
    from deltaprop.io import plots
    from deltaprop.run.train import train
    from deltaprop.teaching.vanishing_gradients import format_summaries, summarize

    settings = read(cfg, VanishingGradientsSettings)
    options, run_dir = settings.vanishing_gradients, resolve_run_dir(settings,
                                                                    "vanishing_gradients")
    runs, summaries = {}, []
    for activation in options.activations:
        run = dataclasses.replace(
            settings, run_dir=str(run_dir / activation), print_config=False,
            model=dataclasses.replace(settings.model, activation=activation),
            trainer=dataclasses.replace(settings.trainer, num_seeds=options.seeds))
        result = train(run)
        finite = [m for m, diverged in enumerate(result.diverged) if not diverged]
        if len(finite) < len(result.members):
            log.info(f"{activation}: {len(result.members) - len(finite)} of "
                     f"{len(result.members)} members diverged and are left out")
        runs[str(activation)] = [list(result.histories[m]) for m in finite]
        summaries.append(summarize(str(activation), runs[str(activation)],
                                   [result.initial_params[m] for m in finite], str(activation),
                                   options.plateau_margin))
    figure = plots.plot_vanishing_gradients(runs, run_dir / "vanishing_gradients.png")
    if options.figure:
        ensure_writable_directory(Path(options.figure).parent)
        shutil.copyfile(figure, options.figure)
    write_json(run_dir / "vanishing_gradients.json", summaries)
    log.info(format_summaries(summaries))
    log.info(f"figure: {figure}" + (f" and {options.figure}" if options.figure else ""))
    return summaries

