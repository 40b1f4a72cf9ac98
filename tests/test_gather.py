"""Tests for sweep.block and deltaprop.run.gather: a grid trained in blocks, joined, equals the
grid trained at once; blocks that are not one whole grid are refused, naming what is wrong."""

from __future__ import annotations

import json

import pytest

from deltaprop.run.config import read
from deltaprop.run.gather import GatherError, gather, main
from deltaprop.run.setup import block_of, grid_of
from deltaprop.run.train import train

GRID = ["trainer.num_seeds=2", "sweep.lr=[0.5,2.0]", "sweep.init_scale=[0.5,1.0]",
        "trainer.precision=float64"]  # 8 members


@pytest.fixture(scope="module")
def blocks(tmp_path_factory):
    """The grid trained at once (whole/) and in three blocks (blocks/block_<i>/)."""
    from conftest import SMALL, compose_config

    root = tmp_path_factory.mktemp("gather")
    train(compose_config(*SMALL, *GRID, f"run_dir={root / 'whole'}"))
    for index in range(3):
        train(compose_config(*SMALL, *GRID, f"sweep.block={index}/3",
                             f"run_dir={root / 'blocks' / f'block_{index}'}"))
    return root


def test_blocks_are_contiguous_near_equal_and_keep_their_grid_indices(make_cfg):
    cfg = make_cfg(*GRID)
    grid = grid_of(read(cfg))
    parts = [block_of(grid, f"{i}/3") for i in range(3)]
    assert [[m.index for m in part] for part in parts] == [[0, 1], [2, 3, 4], [5, 6, 7]]
    with pytest.raises(ValueError, match="sweep.block=8/9 asks for 9 blocks of a grid of only 8"):
        block_of(grid, "8/9")


@pytest.mark.parametrize("bad", ["3/3", "1", "a/b", "-1/2"])
def test_a_malformed_block_is_refused_naming_the_key(make_cfg, bad):
    from deltaprop.errors import ConfigError

    with pytest.raises(ConfigError, match=r"sweep.block="):
        train(make_cfg(*GRID, f"sweep.block={bad}"))


def test_joined_blocks_equal_the_sweep_trained_at_once(blocks):
    summary = gather([blocks / "blocks"])
    whole = json.loads((blocks / "whole" / "members.json").read_text())
    joined = json.loads((blocks / "blocks" / "gathered" / "members.json").read_text())
    assert [row["member"] for row in joined] == list(range(8))
    for got, want in zip(joined, whole, strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            if isinstance(value, float):
                value = pytest.approx(value, rel=1e-10, abs=1e-12)
            assert got[key] == value, (got["member"], key)  # None (sgd's momentum) as well
    expected = json.loads((blocks / "whole" / "summary.json").read_text())
    assert summary["sweep/best_lr"] == expected["sweep/best_lr"]
    assert summary["sweep/best_init_scale"] == expected["sweep/best_init_scale"]
    assert summary["val/best_loss"] == pytest.approx(expected["val/best_loss"], rel=1e-10)
    written = json.loads((blocks / "blocks" / "gathered" / "summary.json").read_text())
    assert len(written["by_point"]) == 4 and set(written["by_axis"]) == {"lr", "init_scale"}
    assert (blocks / "blocks" / "gathered" / "members.csv").is_file()
    # a second gather into the same folder is refused: nothing is overwritten
    with pytest.raises(GatherError, match="already holds a sweep's summary"):
        gather([blocks / "blocks"])


def test_a_missing_block_or_another_sweep_is_refused(blocks, tmp_path):
    with pytest.raises(GatherError, match=r"blocks of 3: missing \[1\]"):
        gather([blocks / "blocks" / "block_0", blocks / "blocks" / "block_2"], tmp_path / "a")
    with pytest.raises(GatherError, match="split the grid differently"):
        gather([blocks / "blocks" / "block_0", blocks / "whole"], tmp_path / "b")
    assert main([str(tmp_path / "nowhere")]) == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ---------------------------------------------------------------- blocks built by hand

SETTINGS = {"seed": 0, "trainer.epochs": 10, "model.hidden": [16, 16],
            "trainer.precision": "float32", "dataset.path": None, "optimizer.lr": 1.0,
            "sweep.lr": [0.1, 1.0]}


def member_row(index: int) -> dict:
    """Member `index` of a grid of lr [0.1, 1.0] × 3 seeds, with made-up metrics."""
    return {"member": index, "seed": index % 3, "lr": [0.1, 1.0][index // 3],
            "weight_decay": 0.0, "momentum": None, "init_scale": 1.0, "diverged": index == 5,
            "diverged_epoch": 4 if index == 5 else None, "val/best_loss": 0.5 - 0.01 * index,
            "val/acc": 0.8, "test/acc": None if index == 5 else 0.75}


def write_block(directory, index: int, count: int = 3, settings=None, grid_members: int = 6,
                **grid_changes):
    """A block's run directory as training leaves it: grid.json and members.json."""
    from deltaprop.run.setup import block_of

    directory.mkdir(parents=True)
    grid = {"block": f"{index}/{count}", "grid_members": grid_members, "axes": ["lr"],
            "objective": "val/best_loss", "settings": SETTINGS if settings is None else settings,
            **grid_changes}
    (directory / "grid.json").write_text(json.dumps(grid))
    rows = [member_row(m) for m in block_of(list(range(grid_members)), f"{index}/{count}")]
    (directory / "members.json").write_text(json.dumps(rows))
    return directory


@pytest.fixture
def sweep(tmp_path):
    """Three hand-built blocks of one grid of six members, under tmp_path/sweep."""
    return [write_block(tmp_path / "sweep" / f"block_{i}", i) for i in range(3)]


def entries(directory):
    return sorted(path.name for path in directory.iterdir())


def test_hand_built_blocks_join(sweep, tmp_path):
    summary = gather([tmp_path / "sweep"])
    joined = json.loads((tmp_path / "sweep" / "gathered" / "members.json").read_text())
    assert joined == [member_row(m) for m in range(6)]
    assert summary["sweep/best_lr"] == 1.0 and summary["sweep/diverged"] == 1.0
    assert summary["val/best_loss"] == pytest.approx((0.47 + 0.46) / 2)
    assert entries(tmp_path / "sweep") == ["block_0", "block_1", "block_2", "gathered"]
    assert entries(tmp_path / "sweep" / "gathered") == ["members.csv", "members.json",
                                                        "summary.json"]


@pytest.mark.parametrize(("key", "value", "line"), [
    ("trainer.epochs", 12, "  trainer.epochs: 12 vs 10"),
    ("model.hidden", [4], "  model.hidden: [4] vs [16, 16]"),
    ("trainer.precision", "float64", '  trainer.precision: "float64" vs "float32"'),
    ("dataset.path", "/data/b.csv", '  dataset.path: "/data/b.csv" vs null'),
    ("seed", True, "  seed: true vs 0"),  # JSON's true is not 0 or 1
    ("trainer.grad", "autodiff", '  trainer.grad: "autodiff" vs (absent)'),
])
def test_blocks_differing_in_one_setting_are_refused_naming_it(tmp_path, key, value, line):
    write_block(tmp_path / "a", 0)
    write_block(tmp_path / "b", 1, settings=SETTINGS | {key: value})
    write_block(tmp_path / "c", 2)
    with pytest.raises(GatherError) as caught:
        gather([tmp_path], tmp_path / "out")
    lines = str(caught.value).splitlines()
    assert lines == [(f"{tmp_path / 'b'} is not a block of the sweep of {tmp_path / 'a'}: "
                     "1 setting differs (b vs a):"), line]
    assert not (tmp_path / "out").exists()


def test_nested_settings_are_compared_key_by_key(tmp_path):
    """The whole resolved config, nested: each differing leaf as a dotted path, one line each;
    1 and 1.0 are the same number."""
    nested = {"trainer": {"epochs": 10, "precision": "float32"}, "model": {"hidden": [16, 16]},
              "optimizer": {"lr": 1, "schedule": {"name": "constant", "steps": [10, 20]}},
              "layers": [{"width": 16}, {"width": 16}], "objective": "val/best_loss"}
    changed = json.loads(json.dumps(nested))
    changed["trainer"]["epochs"] = 12
    changed["optimizer"]["lr"] = 1.0
    changed["optimizer"]["schedule"]["steps"] = [10, 30]
    changed["layers"][1]["width"] = 4
    changed["model"]["activation"] = "tanh"
    write_block(tmp_path / "a", 0, 2, settings=nested)
    write_block(tmp_path / "b", 1, 2, settings=changed)
    with pytest.raises(GatherError) as caught:
        gather([tmp_path], tmp_path / "out")
    lines = str(caught.value).splitlines()
    assert lines[0].endswith("4 settings differ (b vs a):")
    assert lines[1:] == ["  trainer.epochs: 12 vs 10",
                         '  model.activation: "tanh" vs (absent)',
                         "  optimizer.schedule.steps: [10, 30] vs [10, 20]",
                         "  layers[1].width: 4 vs 16"]
    assert len(str(caught.value)) < 400  # the differing keys, not the whole settings twice


def test_grid_fields_differ_by_name_and_long_lists_are_cut(tmp_path):
    many = {f"key_{i:02d}": i for i in range(30)}
    write_block(tmp_path / "a", 0, 2, settings=many)
    write_block(tmp_path / "b", 1, 2, settings={key: -value for key, value in many.items()},
                objective="val/acc", axes=["lr", "momentum"])
    with pytest.raises(GatherError) as caught:
        gather([tmp_path], tmp_path / "out")
    lines = str(caught.value).splitlines()
    assert lines[0].endswith("31 settings differ (b vs a):")  # key_00 is 0 = -0
    assert lines[1:3] == ['  axes: ["lr", "momentum"] vs ["lr"]',
                          '  objective: "val/acc" vs "val/best_loss"']
    assert len(lines) == 1 + 20 + 1 and lines[-1] == "  ... and 11 more"


def test_a_block_killed_between_grid_and_members_is_named(sweep, tmp_path, capsys):
    (sweep[1] / "members.json").unlink()
    out = tmp_path / "out"
    assert main([str(tmp_path / "sweep"), "--out", str(out)]) == 2
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line]
    assert line == (f"error: {sweep[1]}: members.json is missing (was the block stopped while "
                    "it wrote its outputs? train it again)")
    assert not out.exists() and entries(tmp_path) == ["sweep"]


def swap(old: str, new: str):
    """A damage: `old` in the file's text replaced by `new` (which must be there)."""
    def damage(text: str) -> str:
        assert old in text
        return text.replace(old, new)

    return damage


# What is done to a file of block_1 -> the start of the one-line refusal after "<block>: ".
DAMAGE = {
    "truncated members.json": ("members.json", lambda text: text[:-7],
                               "members.json is damaged (not JSON: "),
    "truncated grid.json": ("grid.json", lambda text: text[: len(text) // 2],
                            "grid.json is damaged (not JSON: "),
    "empty grid.json": ("grid.json", lambda text: "", "grid.json is damaged (not JSON: "),
    "grid.json a list": ("grid.json", lambda text: "[]",
                         "grid.json is damaged (a list, not an object)"),
    "grid_members a string": ("grid.json", swap('"grid_members": 6', '"grid_members": "6"'),
                              "grid.json is damaged ('grid_members' is \"6\", not a whole"),
    "no settings": ("grid.json", swap(', "settings": ', ', "other": '),
                    "grid.json is damaged (no 'settings')"),
    "block out of range": ("grid.json", swap('"1/3"', '"3/3"'),
                           "grid.json is damaged (its block '3/3' is not i/n"),
    "members.json an object": ("members.json", lambda text: "{}",
                               "members.json is damaged (an object, not a list of members)"),
    "a member without its index": ("members.json", swap('"member": 3, ', ""),
                                   "members.json is damaged (entry 1 has no 'member')"),
    "a member outside the grid": ("members.json", swap('"member": 3,', '"member": 60,'),
                                  ("members.json is damaged (entry 1: 'member' is 60, not one "
                                  "of 0..5)")),
    "diverged not a bool": ("members.json", swap('"diverged": false', '"diverged": "no"'),
                            ("members.json is damaged (entry 0: 'diverged' is \"no\", not true "
                            "or false)")),
    "a metric as text": ("members.json", swap('"val/acc": 0.8', '"val/acc": "0.8"'),
                         ("members.json is damaged (entry 0: 'val/acc' is \"0.8\", not a "
                         "number or null)")),
    "not UTF-8": ("members.json", lambda text: "\udcff", "members.json is damaged (not UTF-8"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_block_files_are_named_in_one_line(sweep, tmp_path, case):
    name, damage, said = DAMAGE[case]
    path = sweep[1] / name
    damaged = damage(path.read_text())
    path.write_bytes(damaged.encode("utf-8", "surrogateescape"))
    with pytest.raises(GatherError) as caught:
        gather([tmp_path / "sweep"], tmp_path / "out")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{sweep[1]}: {said}")
    assert not (tmp_path / "out").exists() and entries(tmp_path) == ["sweep"]


def test_a_block_holding_another_blocks_members_is_refused(sweep, tmp_path):
    (sweep[1] / "members.json").write_text((sweep[2] / "members.json").read_text())
    (sweep[2] / "members.json").write_text((sweep[0] / "members.json").read_text())
    with pytest.raises(GatherError, match=rf"{sweep[1]}: members.json holds members \[4, 5\], "
                                          r"but block 1/3 of the grid is members \[2, 3\]"):
        gather([tmp_path / "sweep"], tmp_path / "out")


def test_a_full_disk_while_gathering_writes_nothing(sweep, tmp_path, monkeypatch):
    import errno

    from test_atomic_outputs import FaultyOs

    from deltaprop.errors import OutputError
    from deltaprop.io import files

    # writes that work: the check that out's parent is writable, then members.csv
    faulty = FaultyOs("write", errno.ENOSPC, partial=True, after=2)
    monkeypatch.setattr(files, "os", faulty)
    with pytest.raises(OutputError) as caught:
        gather([tmp_path / "sweep"], tmp_path / "out")
    assert str(caught.value) == (f"cannot write {tmp_path / 'out' / 'members.json'}: No space "
                                 "left on device (ENOSPC); nothing there was changed")
    monkeypatch.undo()
    assert faulty.calls == 4  # the fault came on the second of the three tables
    assert entries(tmp_path) == ["sweep"]  # no out, no temporary folder
    (tmp_path / "a_file").write_text("keep me")
    assert main([str(tmp_path / "sweep"), "--out", str(tmp_path / "a_file" / "out")]) == 2
    assert (tmp_path / "a_file").read_text() == "keep me"


def test_gathering_into_an_existing_empty_folder(sweep, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    gather([tmp_path / "sweep"], out)
    assert entries(out) == ["members.csv", "members.json", "notes.txt", "summary.json"]
    assert entries(tmp_path) == ["out", "sweep"]
