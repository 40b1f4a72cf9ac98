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
