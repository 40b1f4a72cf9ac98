"""The textbook example, step by step: every z_l, a_l, δ_l, ∂L/∂W_l, ∂L/∂b_l and one update.

    python experiments/worked_example.py                          # experiment=worked_example
    python experiments/worked_example.py worked_example.mode=by_hand          # calculator-sized
    python experiments/worked_example.py worked_example.mode=by_hand worked_example.batch=4
    python experiments/worked_example.py worked_example.page=true             # + backprop.html
    python experiments/worked_example.py worked_example.batch=8 optimizer.lr=0.1

The primary config `worked_example_app`, registered below, is conf/config.yaml with
`override experiment: worked_example` in its defaults list: the experiment applies unless the
command line names another one. `worked_example.mode=by_hand` without an `experiment=` selects
conf/experiment/worked_example_by_hand.yaml (a [2, 2, 2, 2, 1] network on one row of the XOR
truth table; the command line's other overrides still apply) and prints every number's
arithmetic. Prints the forward pass (layer 2 up to L), the backward pass (L down to 2) and the
update, and writes into the Hydra run directory `worked_example.md`, `network.svg` (the picture
of the network) and, with `worked_example.page=true`, `backprop.html` (the first
`worked_example.page_steps` training steps, stepped through in a browser). Exits 1 when a check
against jax.grad fails or the loss does not fall, 2 on bad input.
"""

import sys
from pathlib import Path

import hydra
from hydra import compose
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import deltaprop.io.config
from deltaprop.io.xla_cache import enable_compilation_cache
from deltaprop.run.setup import worked_example_inputs
from deltaprop.teaching.history import training_history
from deltaprop.teaching.page import format_page
from deltaprop.teaching.render import format_console, format_markdown
from deltaprop.teaching.svg import format_svg, picture_of_example
from deltaprop.teaching.worked_example import worked_example

APP = "worked_example_app"
BY_HAND_EXPERIMENT = "worked_example_by_hand"
ConfigStore.instance().store(
    name=APP, node={"defaults": ["config", {"override experiment": "worked_example"}, "_self_"]}
)


def with_by_hand_experiment(cfg: DictConfig) -> DictConfig:
    """mode=by_hand and no experiment= on the command line: compose again with the by-hand
    experiment, keeping the command line's overrides (they win over the experiment's values)."""
    overrides = list(HydraConfig.get().overrides.task)
    named = any(o.lstrip("+~").startswith("experiment=") for o in overrides)
    if cfg.worked_example.mode != "by_hand" or named:
        return cfg
    return compose(config_name=APP, overrides=[f"experiment={BY_HAND_EXPERIMENT}", *overrides])


def data_source(cfg: DictConfig) -> str:
    if cfg.dataset.name == "xor_table":
        return "the XOR truth table, as it is"
    return f"the first standardized training examples of dataset={cfg.dataset.name}"


@hydra.main(version_base="1.3", config_path="../conf", config_name=APP)
def main(cfg: DictConfig) -> None:
    try:
        cfg = with_by_hand_experiment(cfg)
        deltaprop.io.config.validate_config(cfg)
        options = cfg.worked_example
        params, x, y = worked_example_inputs(cfg, options.batch)
    except ValueError as error:  # ConfigError, DataError, a bad batch: found before any work
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    by_hand, digits, source = options.mode == "by_hand", options.digits, data_source(cfg)
    example = worked_example(params, x, y, cfg.optimizer.lr, data=source)
    print(format_console(example, digits, by_hand=by_hand))
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    outputs = [  # (what, file name, text)
        ("report", "worked_example.md",
         format_markdown(example, digits, by_hand, picture="network.svg")),
        ("picture", "network.svg", format_svg(picture_of_example(example), digits)),
    ]
    passed = example.passed
    if options.page:
        history = training_history(params, x, y, cfg.optimizer.lr, options.page_steps)
        outputs.append(("page", "backprop.html", format_page(history, digits, source)))
        passed = passed and history.passed
    print()
    for what, name, text in outputs:
        (run_dir / name).write_text(text, encoding="utf-8")
        print(f"{what}: {run_dir / name}")
    if not passed:
        sys.exit(1)


if __name__ == "__main__":
    enable_compilation_cache()
    main()
