"""Tests for deltaprop.run.resume: a resume compares every setting but a short named list, and
accepts only the changes a run can honour exactly, named."""

from __future__ import annotations

import pytest
from conftest import compose_config

from deltaprop.errors import ConfigError
from deltaprop.io.checkpoints import CheckpointMismatch
from deltaprop.run import resume
from deltaprop.run.config import read
from deltaprop.run.resume import changes_on_resume, check_resume_changes
from deltaprop.settings import TrainSettings, flat


def metadata(*overrides, data="abc"):
    return {"settings": flat(read(compose_config(*overrides)).training()), "data": data}


def test_every_key_is_compared_but_the_named_few_that_cannot_change_what_is_computed():
    keys = flat(TrainSettings())
    not_compared = {key for key in keys if not resume.compared(key)}
    assert not_compared == resume.NOT_COMPARED | {k for k in keys if k.startswith("logger.")}
    # Every compared key is either honourable when named, or refused with a reason.
    for key in keys:
        if resume.compared(key) and key not in resume.CAN_CHANGE:
            assert resume.why_not(key)


def test_a_key_added_to_the_schema_later_is_compared_by_default():
    saved, current = metadata(), metadata()
    current["settings"]["trainer.new_knob"] = 7  # a key no list names
    with pytest.raises(CheckpointMismatch, match=r"trainer.new_knob None -> 7; trainer.new_knob "
                                                 r"cannot change on resume"):
        changes_on_resume(saved, current, (), "ckpt")


def test_a_changed_setting_is_refused_naming_old_and_new_values():
    with pytest.raises(CheckpointMismatch, match=r"other settings: optimizer.lr 1.0 -> 0.001; "
                                                 r"trainer.limit_batches 0 -> 2; trainer."
                                                 r"limit_batches cannot change on resume \(it "
                                                 r"changes the batch layout\)"):
        changes_on_resume(metadata(), metadata("optimizer.lr=0.001", "trainer.limit_batches=2"),
                          (), "ckpt")
    with pytest.raises(CheckpointMismatch, match=r"optimizer.lr 1.0 -> 0.001; to continue .* "
                                                 r"trainer.resume_changes=\[optimizer.lr\]"):
        changes_on_resume(metadata(), metadata("optimizer.lr=0.001"), (), "ckpt")


def test_named_honourable_changes_are_accepted_and_listed():
    changes = changes_on_resume(metadata(), metadata("optimizer.lr=0.001", "loss=mse"),
                                ("optimizer.lr", "loss"), "ckpt")
    assert changes == [{"key": "optimizer.lr", "old": 1.0, "new": 0.001},
                       {"key": "loss", "old": "bce", "new": "mse"}]
    assert changes_on_resume(metadata(), metadata(), ("optimizer.lr",), "ckpt") == []


@pytest.mark.parametrize(("key", "why"), [
    ("seed", "the member set"), ("trainer.num_seeds", "the member set"),
    ("sweep.lr", "the member set"), ("sweep.block", "the block"),
    ("trainer.batch_size", "the batch layout"), ("trainer.limit_batches", "the batch layout"),
    ("model.hidden", "the state's shapes"), ("model.init", "the initialization"),
])
def test_a_change_that_cannot_be_honoured_is_refused_when_named(key, why):
    with pytest.raises(ConfigError, match=rf"names {key}, which cannot change on resume: it "
                                          rf"changes {why}"):
        check_resume_changes(read(compose_config(f"trainer.resume_changes=[{key}]")).training())


def test_only_config_keys_that_a_resume_compares_can_be_named():
    settings = read(compose_config("trainer.resume_changes=[optimizer.lr,dataset.path]"))
    assert check_resume_changes(settings.training()) == ("optimizer.lr", "dataset.path")
    with pytest.raises(ConfigError, match="names optimizer.lrr, which is not a config key"):
        check_resume_changes(read(compose_config("trainer.resume_changes=[optimizer.lrr]")))
    with pytest.raises(ConfigError, match="names logger.project, which a resume never compares"):
        check_resume_changes(read(compose_config("trainer.resume_changes=[logger.project]")))


def test_other_data_under_the_same_settings_is_refused():
    with pytest.raises(CheckpointMismatch, match="trained on other data under the same settings"):
        changes_on_resume(metadata(), metadata(data="other"), (), "ckpt")
    assert changes_on_resume(metadata(), metadata("dataset.noise=0.3", data="other"),
                             ("dataset.noise",), "ckpt")[0]["key"] == "dataset.noise"


def test_epochs_may_grow_with_a_constant_schedule_only():
    assert changes_on_resume(metadata(), metadata("trainer.epochs=400"), (), "ckpt") == []
    cosine = ("optimizer.schedule=cosine",)
    with pytest.raises(CheckpointMismatch, match=r"trainer.epochs 200 -> 400"):
        changes_on_resume(metadata(*cosine), metadata(*cosine, "trainer.epochs=400"), (), "ckpt")
    assert changes_on_resume(metadata(*cosine), metadata(*cosine, "trainer.epochs=400"),
                             ("trainer.epochs",), "ckpt")[0]["new"] == 400


def test_what_never_changes_a_computation_is_not_compared():
    changed = metadata("logger=none", "trainer.eval_every=3", "trainer.checkpoint_every=7",
                       "run_dir=/elsewhere", "experiment_name=x", "trainer.progress=false")
    assert changes_on_resume(metadata(), changed, (), "ckpt") == []


def test_a_checkpoint_that_predates_a_key_ran_with_its_default():
    older = metadata()
    older["settings"] = {key: value for key, value in older["settings"].items()
                         if key not in ("loss", "model.activation")}  # saved before the keys
    assert changes_on_resume(older, metadata(), (), "ckpt") == []
    with pytest.raises(CheckpointMismatch, match=r"loss 'bce' -> 'mse'"):
        changes_on_resume(older, metadata("loss=mse"), (), "ckpt")
