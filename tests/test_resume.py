"""Tests for deltaprop.run.resume: a resume refuses changed settings unless they are named."""

from __future__ import annotations

import pytest
from conftest import compose_config

from deltaprop.io.checkpoints import CheckpointMismatch
from deltaprop.io.config import ConfigError
from deltaprop.run.resume import SETTINGS, changes_on_resume, check_resume_changes, run_settings


def metadata(*overrides, data="abc"):
    return {"settings": run_settings(compose_config(*overrides)), "data": data}


def test_every_setting_is_recorded_as_plain_values():
    settings = run_settings(compose_config("sweep.lr=[0.1,1.0]"))
    assert list(settings) == list(SETTINGS)
    assert settings["sweep.lr"] == [0.1, 1.0] and settings["optimizer.lr"] == 1.0


def test_a_changed_setting_is_refused_naming_old_and_new_values():
    with pytest.raises(CheckpointMismatch, match=r"other settings: seed 0 -> 3; optimizer.lr "
                                                 r"1.0 -> 0.001\. .*resume_changes=\["
                                                 r"seed,optimizer.lr\]"):
        changes_on_resume(metadata(), metadata("optimizer.lr=0.001", "seed=3"), [], "ckpt")


def test_named_changes_are_accepted_and_listed():
    changes = changes_on_resume(metadata(), metadata("optimizer.lr=0.001", "trainer.batch_size=8"),
                                ["optimizer.lr", "trainer.batch_size"], "ckpt")
    assert changes == [{"key": "optimizer.lr", "old": 1.0, "new": 0.001},
                       {"key": "trainer.batch_size", "old": 32, "new": 8}]
    assert changes_on_resume(metadata(), metadata(), ["optimizer.lr"], "ckpt") == []


def test_other_data_under_the_same_settings_is_refused():
    with pytest.raises(CheckpointMismatch, match="trained on other data under the same settings"):
        changes_on_resume(metadata(), metadata(data="other"), [], "ckpt")
    assert changes_on_resume(metadata(), metadata("dataset.noise=0.3", data="other"),
                             ["dataset.noise"], "ckpt")[0]["key"] == "dataset.noise"


def test_only_known_settings_can_be_named():
    assert check_resume_changes(compose_config("trainer.resume_changes=[optimizer.lr]")) == [
        "optimizer.lr"]
    with pytest.raises(ConfigError, match=r"names model.hidden, which a resume cannot change"):
        check_resume_changes(compose_config("trainer.resume_changes=[model.hidden]"))


def test_a_changed_cost_or_activation_is_refused_and_older_checkpoints_mean_the_defaults():
    with pytest.raises(CheckpointMismatch, match=r"loss 'bce' -> 'mse'; model.activation "
                                                 r"'sigmoid' -> 'tanh'"):
        changes_on_resume(metadata(), metadata("loss=mse", "model.activation=tanh"), [], "ckpt")
    older = metadata()
    older["settings"] = {key: value for key, value in older["settings"].items()
                         if key not in ("loss", "model.activation")}  # saved before the keys
    assert changes_on_resume(older, metadata(), [], "ckpt") == []
    with pytest.raises(CheckpointMismatch, match=r"loss 'bce' -> 'mse'"):
        changes_on_resume(older, metadata("loss=mse"), [], "ckpt")
