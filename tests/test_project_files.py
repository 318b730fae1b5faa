"""Project files agree with each other: version, licence, citation metadata, changelog."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import skyscan

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.fixture(scope="module")
def citation():
    return yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))


def test_package_version_is_the_project_version(project):
    assert skyscan.__version__ == project["version"]


def test_license_is_bsd_3_clause(project):
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026, the skyscan developers" in text
    assert project["license"] == {"text": "BSD-3-Clause"}


def test_citation_has_the_required_keys_and_agrees(citation, project):
    assert {"cff-version", "message", "title", "authors"} <= set(citation)
    assert citation["cff-version"] == "1.2.0"
    assert citation["authors"] and all(isinstance(a, dict) for a in citation["authors"])
    assert citation["version"] == project["version"]
    assert citation["license"] == "BSD-3-Clause"


def test_citation_references_are_complete(citation):
    refs = citation["references"]
    for ref in refs:
        assert {"type", "title", "authors", "year", "doi"} <= set(ref), ref.get("title")
        assert re.fullmatch(r"10\.\d{4,}/\S+", ref["doi"]), ref["doi"]
    first_authors = {ref["authors"][0]["family-names"] for ref in refs}
    assert first_authors >= {"Lanusse", "Metcalf", "Collett", "Birrer", "Górski"}


def test_changelog_has_unreleased_and_the_current_version(project):
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.M)
    assert headings[:2] == ["Unreleased", project["version"]]
