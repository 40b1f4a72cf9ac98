"""Join the blocks of one sweep (sweep.block=i/n, one job each) into the sweep's tables.

    deltaprop-gather multirun/<experiment>/<time>          # finds every block's grid.json
    deltaprop-gather run_a run_b run_c --out joined

Every block wrote grid.json (the grid's size, axes, objective and settings, and its block) beside
its members.json. The blocks are joined only if they are one grid: the same settings, axes,
objective and block count, every block once, every member once. Then members.csv, members.json
and summary.json (the best grid point's means, by_point, by_axis) are written as one sweep's
would be, and the per-point table printed. The members' own directories stay where they are.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from deltaprop.errors import InputError
from deltaprop.metrics import aggregate
from deltaprop.run import outputs
from deltaprop.settings import parse_block

log = logging.getLogger(__name__)


class GatherError(InputError):
    """Blocks that are not one sweep, or are incomplete (names what differs or is missing)."""


def find_blocks(paths: list[Path]) -> list[Path]:
    """The run directories holding a grid.json, under (or at) each path."""
    found = []
    for path in paths:
        if not path.exists():
            raise GatherError(f"{path} does not exist")
        found += sorted(grid.parent for grid in path.rglob("grid.json"))
    if not found:
        raise GatherError(f"no grid.json under {', '.join(map(str, paths))}: "
                          "not the run directories of a sweep")
    return found


def join_blocks(directories: list[Path]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the grid, every member's final row in index order), after checking the blocks form one
    whole grid."""
    grids = [json.loads((directory / "grid.json").read_text()) for directory in directories]
    first = grids[0]
    for directory, grid in zip(directories[1:], grids[1:]):
        for key in ("settings", "axes", "objective", "grid_members"):
            if grid[key] != first[key]:
                raise GatherError(f"{directory} is not a block of the sweep of {directories[0]}: "
                                  f"its {key} differs ({grid[key]!r} vs {first[key]!r})")
    blocks = [parse_block(grid["block"]) if grid["block"] else (0, 1) for grid in grids]
    count = blocks[0][1]
    if any(total != count for _, total in blocks):
        raise GatherError(f"the blocks split the grid differently: {sorted(set(blocks))}")
    seen = sorted(index for index, _ in blocks)
    if seen != list(range(count)):
        missing = sorted(set(range(count)) - set(seen))
        repeated = sorted({index for index in seen if seen.count(index) > 1})
        raise GatherError(f"blocks of {count}: missing {missing}, repeated {repeated} "
                          f"(found in {len(directories)} directories)")
    finals = [row for directory in directories
              for row in json.loads((directory / "members.json").read_text())]
    finals.sort(key=lambda row: row["member"])
    if [row["member"] for row in finals] != list(range(first["grid_members"])):
        raise GatherError(f"the blocks hold members {[row['member'] for row in finals]}, "
                          f"not 0..{first['grid_members'] - 1}")
    return first, finals


def gather(paths: list[Path], out: Path | None = None) -> dict[str, Any]:
    """Join the blocks under `paths`, write the sweep's tables into `out` (default: a new
    `gathered` folder beside the blocks) and return the summary."""
    directories = find_blocks(paths)
    grid, finals = join_blocks(directories)
    out = out or _common_parent(directories) / "gathered"
    if (out / "summary.json").exists() or (out / "grid.json").exists():
        raise GatherError(f"{out} already holds a sweep's summary: choose another --out "
                          "(nothing was written)")
    out.mkdir(parents=True, exist_ok=True)
    summary = aggregate(finals, grid["objective"], grid["axes"])
    summary["sweep/blocks"] = float(len(directories))
    by_point = outputs.write_member_tables(out, finals, summary, grid["axes"])
    keys = [key for key in outputs.BY_POINT_KEYS if f"{key}/mean" in by_point[0]]
    log.info(f"{len(finals)} members from {len(directories)} blocks → {out.resolve()}")
    outputs.print_by_point(by_point, keys, grid["axes"])
    return summary


def _common_parent(directories: list[Path]) -> Path:
    parents = [directory.resolve().parent for directory in directories]
    common = parents[0]
    while not all(parent.is_relative_to(common) for parent in parents):
        common = common.parent
    return common


def main(argv: list[str] | None = None) -> int:
    """deltaprop-gather: exit 0 on success, 2 when the blocks cannot be joined."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path,
                        help="run directories of the blocks, or a folder above them")
    parser.add_argument("--out", type=Path, help="where to write (default: <parent>/gathered)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        gather(args.paths, args.out)
    except GatherError as error:
        log.error(f"error: {error}")
        return 2
    return 0
