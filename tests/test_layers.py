"""The package's layers point one way: the math, then io/, teaching/, run/ (and the playground
beside it), then cli/; and `import deltaprop` brings the math, not Hydra."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, cli_env

PACKAGE = ROOT / "src" / "deltaprop"
# The layer of each sub-package; every module directly in deltaprop/ is the math (0).
LAYERS = {"io": 1, "teaching": 2, "run": 3, "playground": 3, "cli": 4}


def layer_of(module: str) -> int:
    """The layer of a module; `deltaprop` itself (__init__) is the facade over them all."""
    parts = module.removesuffix(".__init__").split(".")
    if parts == ["deltaprop"]:
        return max(LAYERS.values())
    return LAYERS.get(parts[1], 0)


def deltaprop_imports(path: Path) -> set[str]:
    """Every deltaprop module `path` imports, at the top or inside a function."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    def is_module(name: str) -> bool:
        path = PACKAGE.parent / name.replace(".", "/")
        return path.with_suffix(".py").exists() or path.is_dir()

    return {name for name in found if name.startswith("deltaprop.") and is_module(name)}


def modules() -> list[tuple[str, Path]]:
    return [(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts), path)
            for path in sorted(PACKAGE.rglob("*.py")) if "conf" not in path.parts]


@pytest.mark.parametrize(("module", "path"), modules(), ids=[name for name, _ in modules()])
def test_no_module_imports_one_above_it(module, path):
    here = layer_of(module)
    upward = sorted(name for name in deltaprop_imports(path)
                    if layer_of(name) > here or (here == 3 and layer_of(name) == 3
                                                 and name.split(".")[1] != module.split(".")[1]))
    assert not upward, f"{module} (layer {here}) imports {upward}"


def test_import_deltaprop_loads_neither_hydra_nor_omegaconf():
    probe = ("import sys, deltaprop; print(sorted(m for m in ('hydra', 'omegaconf') "
             "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], env=cli_env(), capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_the_teaching_commands_live_in_cli_not_in_teaching():
    teaching = {name for name, path in modules() if name.startswith("deltaprop.teaching.")}
    for name in teaching:
        source = (PACKAGE.parent / name.replace(".", "/")).with_suffix(".py").read_text()
        assert "DictConfig" not in source and "sys.exit" not in source, name
