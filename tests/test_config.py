"""Config schema and range checks: every yaml in conf/ composes, bad values fail with their key."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CONF, compose_config, compose_experiment
from hydra.errors import ConfigCompositionException

from deltaprop.errors import ConfigError, InputError
from deltaprop.run.config import COMMANDS, experiment_owner, read


def cfg_command(experiment: str) -> str:
    owner = experiment_owner(CONF / "experiment" / f"{experiment}.yaml")
    return "train" if owner is None else owner.name

CONF_DIR = Path(__file__).parents[1] / "conf"
GROUPS = ("model", "dataset", "optimizer", "trainer", "logger", "experiment")


def group_options() -> list[tuple[str, str]]:
    """(group, option) for every yaml file under conf/<group>/, found on disk."""
    return [
        (group, path.stem)
        for group in GROUPS
        for path in sorted((CONF_DIR / group).glob("*.yaml"))
    ]


def test_every_group_has_options():
    options = group_options()
    for group in GROUPS:
        assert any(found == group for found, _ in options), f"conf/{group}/ has no yaml files"


@pytest.mark.parametrize(("group", "option"), group_options(), ids="{0[0]}={0[1]}".format)
def test_every_option_composes_and_validates(group, option, tmp_path):
    overrides = [f"{group}={option}"]
    if group == "dataset" and option == "csv":
        overrides.append(f"dataset.path={tmp_path / 'data.csv'}")
    if group == "experiment":  # by the command it belongs to
        cfg = compose_experiment(option)
        read(cfg, COMMANDS[cfg_command(option)].settings)
    else:
        cfg = compose_config(*overrides)
        read(cfg)
    if group == "dataset":
        assert cfg.dataset.name == option
    if group == "optimizer":
        assert cfg.optimizer.name == option
    if group == "logger":
        assert cfg.logger.backend == option
    if group == "experiment":
        # experiment files are overrides only: they land on the typed schema's keys
        assert set(cfg) >= {"model", "dataset", "optimizer", "trainer", "logger"}


def test_defaults_compose_and_validate():
    cfg = compose_config()
    read(cfg)
    assert cfg.dataset.name == "moons"
    assert cfg.logger.backend == "wandb"
    assert cfg.logger.mode == "offline"


def test_experiment_overrides_apply():
    cfg = compose_config("experiment=vanishing_gradients")
    assert list(cfg.model.hidden) == [30, 30, 30, 30]
    assert cfg.dataset.name == "digits_binary"
    assert cfg.experiment_name == "vanishing_gradients"


def test_wrong_type_fails_at_compose_time_naming_the_key():
    with pytest.raises(ConfigCompositionException) as caught:
        compose_config("optimizer.lr=abc")
    message = f"{caught.value} {caught.value.__cause__}"
    assert "optimizer.lr" in message
    assert "abc" in message


@pytest.mark.parametrize(("override", "key"), [("trainer.foo=1", "foo"), ("bar=1", "bar")])
def test_unknown_key_fails_at_compose_time(override, key):
    with pytest.raises(ConfigCompositionException) as caught:
        compose_config(override)
    assert f"Key '{key}' not in" in str(caught.value.__cause__)


@pytest.mark.parametrize(
    ("overrides", "key", "value"),
    [
        (["optimizer.lr=0"], "optimizer.lr", "0.0"),
        (["optimizer.lr=-1"], "optimizer.lr", "-1.0"),
        (["optimizer.lr=inf"], "optimizer.lr", "inf"),
        (["optimizer.lr=nan"], "optimizer.lr", "nan"),
        (["model.hidden=[4,0]"], "model.hidden", "[4, 0]"),
        (["trainer.epochs=0"], "trainer.epochs", "0"),
        (["trainer.batch_size=0"], "trainer.batch_size", "0"),
        (["dataset=csv"], "dataset.path", "None"),
        (["optimizer=momentum", "optimizer.momentum=1.5"], "optimizer.momentum", "1.5"),
        (["optimizer=adam", "optimizer.b1=-5"], "optimizer.b1", "-5.0"),
        (["optimizer=adam", "optimizer.b2=1.0"], "optimizer.b2", "1.0"),
        (["optimizer.decay_rate=0"], "optimizer.decay_rate", "0.0"),
        (["optimizer.decay_rate=-1"], "optimizer.decay_rate", "-1.0"),
        (["optimizer.warmup_epochs=200"], "optimizer.warmup_epochs", "200"),
        (["seed=-1"], "seed", "-1"),
        (["seed=4294967296"], "seed", "4294967296"),
        # member 1's seed would be 2**32, whose key is key(0): the seed=0 run again
        (["seed=4294967295", "trainer.num_seeds=2"], "seed", "4294967295"),
        (["dataset.seed=-3"], "dataset.seed", "-3"),
        (["logger.project=a/b"], "logger.project", "'a/b'"),
        (["logger.entity=my:team"], "logger.entity", "'my:team'"),
        (["logger.tags=[" + "x" * 65 + "]"], "logger.tags", "['" + "x" * 65 + "']"),
        (["+trainer.epoch=2"], "trainer.epoch", "is not a config key"),
        (["+extra=1"], "extra", "is not a config key"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_validate_config_rejects_bad_values(overrides, key, value):
    cfg = compose_config(*overrides)  # composes: Hydra checks types, not ranges
    with pytest.raises(ConfigError) as caught:
        read(cfg)
    message = str(caught.value)
    assert message.startswith((f"{key}={value}", f"{key} {value}")), message
    assert isinstance(caught.value, InputError)  # the CLI turns it into exit code 2


def test_the_boundaries_of_each_range_are_accepted():
    read(compose_config("optimizer.momentum=0", "optimizer.decay_rate=1",
                                   "optimizer.warmup_epochs=199", "seed=4294967295"))


def test_a_notebook_composes_trains_and_reads_the_metrics(tmp_path):
    import deltaprop

    cfg = deltaprop.compose("logger=none", "trainer.progress=false", "logger.plots=false",
                            "trainer.epochs=2", "dataset.n_samples=120", f"run_dir={tmp_path}")
    metrics = deltaprop.train(cfg)
    assert 0 < metrics["val/best_loss"] < 1 and metrics["epoch"] == 2
    # Hydra's own compose API needs nothing but `import deltaprop` (the schema is registered)
    from hydra import compose, initialize_config_module

    with initialize_config_module("deltaprop.conf", version_base="1.3"):
        assert compose("config", overrides=["trainer.grad=autodiff"]).trainer.grad == "autodiff"


def test_a_misspelled_choice_fails_at_compose_time_listing_the_choices():
    with pytest.raises(ConfigCompositionException) as caught:
        compose_config("trainer.grad=autodif")
    assert "Invalid value 'autodif', expected one of [manual, autodiff]" in str(
        caught.value.__cause__)


def test_loss_and_activation_choices_compose_and_default_to_bce_and_sigmoid():
    cfg = compose_config()
    assert (cfg.loss, cfg.model.activation) == ("bce", "sigmoid")
    cfg = compose_config("loss=mse", "model.activation=tanh")
    read(cfg)
    assert (cfg.loss, cfg.model.activation) == ("mse", "tanh")
    for override, choices in (("loss=l2", "[bce, mse]"),
                              ("model.activation=gelu", "[sigmoid, tanh, relu]")):
        with pytest.raises(ConfigCompositionException) as caught:
            compose_config(override)
        assert f"expected one of {choices}" in str(caught.value.__cause__)
