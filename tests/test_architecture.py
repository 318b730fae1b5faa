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

#: Everything but the cases is shared by every science case: it takes a case and must never
#: name one, nor its kinds or its columns.
SHARED = tuple(
    sorted(p.name for p in SRC.iterdir() if p.name not in ("cases", "__pycache__", "schemas"))
)

#: Column names that belong to a case (its truth and its figures), and prefixes of such names.
CASE_COLUMNS = {
    "theta_E",
    "n_lenses",
    "magnification",
    "n_real",
    "deeplens_published",
    "drb",
}
CASE_COLUMN_PREFIXES = ("snr_",)


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

    assert not _case_names_in(_shared_modules()), "shared modules name a science case:\n" + (
        "\n".join(_case_names_in(_shared_modules()))
    )


def _case_names_in(paths) -> list[str]:
    """``path:line: value`` of every string constant that is a case's name, one of its kinds,
    one of its parameters or columns, or starts like one of its column families."""
    from skyscan.core.case import case_parameters, default_registry

    names = set(CASE_COLUMNS)
    for name in default_registry.names():
        case = get_case(name)
        names |= {name, *case.kinds, *(p.name for p in case_parameters(case))}
    return [
        f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}: {value!r}"
        for path in paths
        for line, value in _string_constants(path)
        if value in names or value.startswith(CASE_COLUMN_PREFIXES)
    ]


@pytest.mark.parametrize(
    "source",
    ['column = "theta_E"', 'name = f"snr_{band}"', 'count = head["n_lenses"]', 'x = "lenses"'],
)
def test_a_planted_case_column_in_a_shared_module_is_found(tmp_path, source):
    module = tmp_path / "stage.py"
    module.write_text(f'"""A shared stage may say theta_E in its docstring."""\n\n{source}\n')
    assert len(_case_names_in([module])) == 1


@pytest.mark.parametrize("value", ["lens", "ring"])
def test_the_case_name_check_can_fail(tmp_path, value):
    module = tmp_path / "stage.py"
    module.write_text(f'"""Docstrings may say lens."""\n\nLABEL = kind == "{value}"\n')
    assert _string_constants(module) == [(3, value)]


def test_optional_capabilities_are_separate_from_the_case_contract():
    """Detectability, parameter estimation and candidate annotation are capabilities a case
    adds by deriving from their classes; the base contract holds none of them, and the
    shared stages ask ``isinstance`` (a case without them runs every shared stage)."""
    from skyscan.core.case import (
        CandidateAnnotation,
        Case,
        DetectabilitySelection,
        ParameterEstimation,
        case_parameters,
    )

    capabilities = (DetectabilitySelection, ParameterEstimation, CandidateAnnotation)
    for cap in capabilities:
        for member in vars(cap):
            if not member.startswith("_"):
                assert not hasattr(Case, member), f"Case.{member} belongs to {cap.__name__}"
    lenses, transients = get_case("lenses"), get_case("transients")
    assert all(isinstance(lenses, cap) for cap in capabilities)
    assert not any(isinstance(transients, cap) for cap in capabilities)
    assert case_parameters(transients) == () and case_parameters(lenses)[0].name
