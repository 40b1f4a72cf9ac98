"""Join the blocks of one sweep (sweep.block=i/n, one job each) into the sweep's tables.

    deltaprop-gather multirun/train/<experiment>/<time>       # finds every block's grid.json
    deltaprop-gather run_a run_b run_c --out joined

Every block wrote grid.json (the grid's size, axes, objective and settings, and its block) beside
its members.json. The blocks are joined only if they are one grid: every setting but the block
the same (compared key by key, nested settings too: a refusal names each differing key as a
dotted path with both values, one line each), the same axes, objective and block count, every
block once, every member once. Missing or damaged block files (a block killed between writing
grid.json and members.json, a truncated file, values of the wrong type) are refused naming the
block directory and the file. Nothing is written unless everything checks out; then
members.csv, members.json and summary.json (the best grid point's means, by_point, by_axis) are
written as one sweep's would be, into a temporary folder renamed into place, and the per-point
table printed. The members' own directories stay where they are.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deltaprop.errors import ConfigError, InputError, OutputError
from deltaprop.io.console import MessageFormatter
from deltaprop.io.files import ensure_writable_directory, output_error
from deltaprop.metrics import IDENTITY, aggregate
from deltaprop.run import outputs
from deltaprop.run.setup import block_of
from deltaprop.settings import parse_block

log = logging.getLogger(__name__)

GRID, MEMBERS = "grid.json", "members.json"
SHOWN_DIFFERENCES = 20  # differing keys listed in a refusal before "... and N more"
SHOWN_CHARACTERS = 60  # of one value in a refusal
_ABSENT = object()  # a key one block has and another lacks


class GatherError(InputError):
    """Blocks that are not one sweep, or are incomplete (names what differs or is missing)."""


@dataclass(frozen=True)
class Block:
    """One block's run directory, its grid.json, its place (index of count) and member rows."""

    directory: Path
    grid: dict[str, Any]
    index: int
    count: int
    finals: list[dict[str, Any]]


def find_blocks(paths: list[Path]) -> list[Path]:
    """The run directories holding a grid.json, under (or at) each path."""
    found = []
    for path in paths:
        if not path.exists():
            raise GatherError(f"{path} does not exist")
        found += sorted(grid.parent for grid in path.rglob(GRID))
    if not found:
        raise GatherError(f"no {GRID} under {', '.join(map(str, paths))}: "
                          "not the run directories of a sweep")
    return found


def read_block(directory: Path) -> Block:
    """A block's grid.json and members.json, checked; GatherError naming the directory and the
    file that is missing, unreadable, not JSON or holds the wrong types."""
    grid = _read_json(directory, GRID)
    _check_grid(grid, directory)
    try:
        index, count = parse_block(grid["block"]) if grid["block"] else (0, 1)
    except ConfigError:
        raise _damaged(directory, GRID, f"its block {grid['block']!r} is not i/n with "
                                        "0 <= i < n") from None
    finals = _read_json(directory, MEMBERS)
    _check_members(finals, grid, directory)
    return Block(directory, grid, index, count, finals)


def _read_json(directory: Path, name: str) -> Any:
    path = directory / name
    if not path.is_file():
        what = "is not a file" if path.exists() else "is missing"
        raise GatherError(f"{directory}: {name} {what} (was the block stopped while it wrote "
                          "its outputs? train it again)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise GatherError(f"{directory}: {name} cannot be read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise _damaged(directory, name, "not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise _damaged(directory, name, f"not JSON: {error.msg} at line {error.lineno}, "
                                        f"column {error.colno}") from None


def _damaged(directory: Path, name: str, why: str) -> GatherError:
    return GatherError(f"{directory}: {name} is damaged ({why}); train the block again")


def _check_grid(grid: Any, directory: Path) -> None:
    if not isinstance(grid, dict):
        raise _damaged(directory, GRID, f"{_json_kind(grid)}, not an object")
    checks = {
        "block": (lambda v: v is None or isinstance(v, str), "i/n or null"),
        "grid_members": (lambda v: _is_count(v) and v >= 1, "a whole number >= 1"),
        "axes": (lambda v: isinstance(v, list) and all(isinstance(a, str) for a in v),
                 "a list of axis names"),
        "objective": (lambda v: isinstance(v, str), "a metric name"),
        "settings": (lambda v: isinstance(v, dict), "an object"),
    }
    for key, (valid, expected) in checks.items():
        if key not in grid:
            raise _damaged(directory, GRID, f"no {key!r}")
        if not valid(grid[key]):
            raise _damaged(directory, GRID, f"{key!r} is {_shown(grid[key])}, not {expected}")


def _check_members(finals: Any, grid: dict[str, Any], directory: Path) -> None:
    """A list of member rows: 'member' a whole number in the grid, 'diverged' true/false, the
    seed and every axis present, every metric a number or null."""
    if not isinstance(finals, list):
        raise _damaged(directory, MEMBERS, f"{_json_kind(finals)}, not a list of members")
    for position, row in enumerate(finals):
        where = f"entry {position}"
        if not isinstance(row, dict):
            raise _damaged(directory, MEMBERS, f"{where} is {_shown(row)}, not an object")
        missing = [key for key in ("member", "seed", "diverged", *grid["axes"]) if key not in row]
        if missing:
            raise _damaged(directory, MEMBERS, f"{where} has no {', '.join(map(repr, missing))}")
        if not (_is_count(row["member"]) and row["member"] < grid["grid_members"]):
            raise _damaged(directory, MEMBERS, f"{where}: 'member' is {_shown(row['member'])}, "
                                               f"not one of 0..{grid['grid_members'] - 1}")
        if not isinstance(row["diverged"], bool):
            raise _damaged(directory, MEMBERS, f"{where}: 'diverged' is "
                                               f"{_shown(row['diverged'])}, not true or false")
        numbers = [*grid["axes"], *(key for key in row if key not in IDENTITY)]
        bad = [key for key in numbers if not _is_number_or_null(row[key])]
        if bad:
            raise _damaged(directory, MEMBERS, f"{where}: {bad[0]!r} is {_shown(row[bad[0]])}, "
                                               "not a number or null")


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "true or false",
             type(None): "null"}
    return kinds.get(type(value), "a number")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def differences(first: Any, other: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted path, first's value, other's value) of every leaf that differs; dicts compared
    key by key, lists of dicts or lists item by item (path[i]), anything else as a whole; a
    key one side lacks has the value _ABSENT there. true is not 1, 1 is 1.0."""
    if isinstance(first, dict) and isinstance(other, dict):
        for key in [*first, *(key for key in other if key not in first)]:
            yield from differences(first.get(key, _ABSENT), other.get(key, _ABSENT),
                                   f"{path}.{key}" if path else str(key))
    elif (isinstance(first, list) and isinstance(other, list) and len(first) == len(other)
          and any(isinstance(item, (dict, list)) for item in [*first, *other])):
        for position, (mine, theirs) in enumerate(zip(first, other)):
            yield from differences(mine, theirs, f"{path}[{position}]")
    elif not _same(first, other):
        yield path, first, other


def _same(first: Any, other: Any) -> bool:
    if isinstance(first, bool) or isinstance(other, bool):
        return first is other
    if isinstance(first, list) and isinstance(other, list):
        return len(first) == len(other) and all(map(_same, first, other))
    return first == other


def _shown(value: Any) -> str:
    """A value as JSON, cut to SHOWN_CHARACTERS; '(absent)' for a missing key."""
    if value is _ABSENT:
        return "(absent)"
    text = json.dumps(value)
    return text if len(text) <= SHOWN_CHARACTERS else text[:SHOWN_CHARACTERS - 1] + "…"


def grid_differences(first: Block, other: Block) -> list[tuple[str, Any, Any]]:
    """What differs between two blocks' grids but the block itself: the settings by their own
    names (trainer.epochs), the grid's size, axes and objective by theirs."""
    def comparable(grid: dict[str, Any]) -> dict[str, Any]:
        fields = {key: value for key, value in grid.items() if key not in ("block", "settings")}
        return {**fields, **grid["settings"]}

    found = {}
    for path, mine, theirs in differences(comparable(first.grid), comparable(other.grid)):
        found.setdefault(path, (path, mine, theirs))
    return list(found.values())


def check_one_sweep(blocks: list[Block]) -> None:
    """GatherError unless the blocks agree on every setting but the block, split the grid the
    same way, and hold each block once and each member once, in its block."""
    first = blocks[0]
    for block in blocks[1:]:
        found = grid_differences(first, block)
        if found:
            raise GatherError(_refusal(block, first, found))
    places = [(block.index, block.count) for block in blocks]
    count = first.count
    if any(total != count for _, total in places):
        raise GatherError(f"the blocks split the grid differently: {sorted(set(places))}")
    seen = sorted(index for index, _ in places)
    if seen != list(range(count)):
        missing = sorted(set(range(count)) - set(seen))
        repeated = sorted({index for index in seen if seen.count(index) > 1})
        raise GatherError(f"blocks of {count}: missing {missing}, repeated {repeated} "
                          f"(found in {len(blocks)} directories)")
    for block in blocks:
        expected = block_of(list(range(block.grid["grid_members"])), f"{block.index}/{count}")
        held = sorted(row["member"] for row in block.finals)
        if held != expected:
            raise GatherError(f"{block.directory}: {MEMBERS} holds members {held}, but block "
                              f"{block.index}/{count} of the grid is members {expected}")


def _refusal(block: Block, first: Block, found: list[tuple[str, Any, Any]]) -> str:
    """A first line naming both blocks, then one line per differing key (at most
    SHOWN_DIFFERENCES): '  trainer.epochs: 12 vs 10', this block's value first."""
    plural = "s differ" if len(found) > 1 else " differs"
    header = (f"{block.directory} is not a block of the sweep of {first.directory}: "
              f"{len(found)} setting{plural} ({block.directory.name} vs {first.directory.name}):")
    lines = [header]
    lines += [f"  {path}: {_shown(theirs)} vs {_shown(mine)}"
              for path, mine, theirs in found[:SHOWN_DIFFERENCES]]
    if len(found) > SHOWN_DIFFERENCES:
        lines.append(f"  ... and {len(found) - SHOWN_DIFFERENCES} more")
    return "\n".join(lines)


def join_blocks(directories: list[Path]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the grid, every member's final row in index order), after checking the blocks form one
    whole grid."""
    blocks = [read_block(directory) for directory in directories]
    check_one_sweep(blocks)
    finals = sorted((row for block in blocks for row in block.finals),
                    key=lambda row: row["member"])
    return blocks[0].grid, finals


def gather(paths: list[Path], out: Path | None = None) -> dict[str, Any]:
    """Join the blocks under `paths`, write the sweep's tables into `out` (default: a new
    `gathered` folder beside the blocks) and return the summary.

    Raises:
      GatherError: the blocks are not one whole sweep, or a block's files are missing or
        damaged; OutputError: `out` cannot be written. Either way nothing is written.
    """
    directories = find_blocks(paths)
    grid, finals = join_blocks(directories)
    out = out or _common_parent(directories) / "gathered"
    if (out / "summary.json").exists() or (out / GRID).exists():
        raise GatherError(f"{out} already holds a sweep's summary: choose another --out "
                          "(nothing was written)")
    summary = aggregate(finals, grid["objective"], grid["axes"])
    summary["sweep/blocks"] = float(len(directories))
    by_point = _write_tables(out, finals, summary, grid["axes"])
    keys = [key for key in outputs.BY_POINT_KEYS if f"{key}/mean" in by_point[0]]
    log.info(f"{len(finals)} members from {len(directories)} blocks → {out.resolve()}")
    outputs.print_by_point(by_point, keys, grid["axes"])
    return summary


def _write_tables(out: Path, finals, summary, axes) -> list[dict[str, Any]]:
    """The sweep's tables, written into a new folder beside `out` and then renamed into place
    (into an existing `out` file by file, summary.json last): a full disk or a kill leaves no
    half of them."""
    ensure_writable_directory(out.parent)
    staging = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
    try:
        staging.mkdir()  # mode 0o777 less the umask
        by_point = outputs.write_member_tables(staging, finals, summary, axes)
        if not out.exists():
            os.rename(staging, out)
        else:
            for name in sorted(os.listdir(staging), key=lambda name: name == "summary.json"):
                os.replace(staging / name, out / name)
    except OutputError as error:  # named where the file was going, not the temporary folder
        raise OutputError(str(error).replace(str(staging), str(out))) from None
    except OSError as error:
        raise output_error(out, error) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # our own temporary folder, if still there
    return by_point


def _common_parent(directories: list[Path]) -> Path:
    parents = [directory.resolve().parent for directory in directories]
    common = parents[0]
    while not all(parent.is_relative_to(common) for parent in parents):
        common = common.parent
    return common


def main(argv: list[str] | None = None) -> int:
    """deltaprop-gather: exit 0 on success, 2 when the blocks cannot be joined or written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path,
                        help="run directories of the blocks, or a folder above them")
    parser.add_argument("--out", type=Path, help="where to write (default: <parent>/gathered)")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(MessageFormatter("%(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        gather(args.paths, args.out)
    except InputError as error:  # GatherError, and OutputError: `out` cannot be written
        log.error(str(error))
        return 2
    return 0
