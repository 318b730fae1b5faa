"""Architecture: import layers (import-linter contracts in pyproject.toml) and shared stages
that never name a science case."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from skyscan.core.case import get_case

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "skyscan"
LINT = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))

#: Packages shared by every science case: they take a case and must never name one.
SHARED = ("core", "data", "models", "train", "evaluate", "search", "skymap", "config.py")


def _lint(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT, "--config", str(config), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def test_import_layers_hold():
    result = _lint(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_the_contract_check_can_fail(tmp_path):
    """The same check with two layers swapped must report the imports that break it."""
    config = tmp_path / "swapped.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "skyscan"\n\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "swapped"\ntype = "layers"\n'
        'layers = ["skyscan.core", "skyscan.cli"]\n'
    )
    result = _lint(config)
    assert result.returncode != 0
    assert "swapped BROKEN" in result.stdout


def _string_constants(path: Path) -> list[tuple[int, str]]:
    """String literals of a module that are not docstrings."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def _shared_modules() -> list[Path]:
    out = []
    for name in SHARED:
        path = SRC / name
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out


def test_shared_stages_name_no_case():
    """No shared module compares with, or selects by, a case's name or one of its kinds."""
    from skyscan.core.case import default_registry

    names = set()
    for name in default_registry.names():
        names |= {name, *get_case(name).kinds}
    found = [
        f"{path.relative_to(ROOT)}:{line}: {value!r}"
        for path in _shared_modules()
        for line, value in _string_constants(path)
        if value in names
    ]
    assert not found, "shared modules name a science case:\n" + "\n".join(found)


@pytest.mark.parametrize("value", ["lens", "ring"])
def test_the_case_name_check_can_fail(tmp_path, value):
    module = tmp_path / "stage.py"
    module.write_text(f'"""Docstrings may say lens."""\n\nLABEL = kind == "{value}"\n')
    assert _string_constants(module) == [(3, value)]
