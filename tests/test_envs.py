"""The rules' conda environments (envs/*.yaml), checked statically (conda is not needed).

* every dependency in pyproject.toml's [project].dependencies is in each env file, under its
  conda-forge name, with the same version floor;
* each rule's env file (as the workflow names it, for a CPU and a GPU config) holds every
  third-party package that the skyscan verb its shell runs imports, following skyscan's own
  imports transitively (function-level imports included);
* the rules that run no verb are local rules (no cluster job), the others are not.

The checkers are tested to fail on an env file that lacks a package.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from skyscan.cli import COMMANDS

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).parents[1]
SRC = ROOT / "src"
ENVS = ROOT / "envs"
ENV_FILES = sorted(ENVS.glob("*.yaml"))

#: PyPI requirement ("name" or "name[extras]") -> its conda-forge packages, where they differ
PYPI_TO_CONDA = {
    "torch": ("pytorch",),
    "dask[distributed]": ("dask", "distributed"),
}

#: import path (a module, or the start of a dotted module or attribute path) -> the conda-forge
#: package it needs, where that is not the top-level import name (``_`` read as ``-``)
IMPORT_TO_CONDA = {
    "torch": "pytorch",
    "torch.onnx": "onnx",  # torch.onnx.export needs the onnx package, never imported by name
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "PIL": "pillow",
    "dask.distributed": "distributed",
}

#: verbs no rule runs (a person runs them), with the reason
INTERACTIVE_VERBS = {
    "grade": "serves the grading web page until stopped",
    "inject": "paints arcs into a user's own tiles, outside the simulated workflow",
}

# Load the workflow with Snakemake's API and print each rule's env file, verb and locality.
RULES_SCRIPT = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

root, out = Path(sys.argv[1]), {}
# the default config (lens case) and a transient one: each case brings its own rules
configfiles = [[], [root / "config" / "transients-ztf.yaml"]]
for accelerator in sys.argv[2:]:
    out[accelerator] = {}
    for files in configfiles:
        with SnakemakeApi(OutputSettings()) as api:
            wf = api.workflow(
                resource_settings=ResourceSettings(),
                config_settings=ConfigSettings(
                    configfiles=files, config={"train": {"accelerator": accelerator}}
                ),
                snakefile=root / "Snakefile",
                workdir=root,
            )._workflow
            out[accelerator].update({
                r.name: {
                    "conda": r.conda_env and str(Path(r.snakefile).parent / r.conda_env),
                    "shell": r.shellcmd,
                    "local": r.name in wf._localrules or r.norun,
                }
                for r in wf.rules
            })
print(json.dumps(out))
"""


# ---------------------------------------------------------------------------------- checkers


def env_packages(path: Path) -> dict[str, str]:
    """Conda package name -> the rest of its spec (version, build) in one env file."""
    packages = {}
    for dep in yaml.safe_load(path.read_text())["dependencies"]:
        if isinstance(dep, str):
            name, spec = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", dep.strip()).groups()
            packages[name.lower()] = spec
    return packages


def floor(spec: str) -> Version | None:
    """The ``>=`` version floor of a conda spec (``>=2.2=cpu*`` -> 2.2), if any."""
    match = re.search(r">=\s*([0-9][^,=<>|\s]*)", spec)
    return Version(match[1]) if match else None


def check_dependencies(requirements: list[str], packages: dict[str, str]) -> list[str]:
    """Problems: a PyPI requirement whose conda package is missing or has another floor."""
    problems = []
    for text in requirements:
        req = Requirement(text)
        key = req.name + (f"[{','.join(sorted(req.extras))}]" if req.extras else "")
        floors = [Version(s.version) for s in req.specifier if s.operator == ">="]
        for name in PYPI_TO_CONDA.get(key, (req.name.lower(),)):
            if name not in packages:
                problems.append(f"{text}: no {name}")
            elif floors and floor(packages[name]) != floors[0]:
                problems.append(f"{text}: {name}{packages[name]} has another floor")
    return problems


def _module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _dotted(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ["a", "b", "c"] (None unless the chain ends in a name)."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return head and [*head, node.attr]
    return None


@cache
def _imports(module: str) -> tuple[frozenset[str], frozenset[str]]:
    """(skyscan modules, third-party dotted paths) that one skyscan module imports or uses."""
    path = _module_file(module)
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    imported, bound = set(), {}  # bound: local name -> dotted path it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                imported.add(alias.name)
                top = alias.name.partition(".")[0]
                bound[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *filter(None, [node.module])])
            imported.add(base)
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{base}.{alias.name}"
                if base.startswith("skyscan") and _module_file(f"{base}.{alias.name}"):
                    imported.add(f"{base}.{alias.name}")
    used = set(imported)
    for node in ast.walk(tree):  # attribute paths through imported names: torch.onnx.export
        chain = _dotted(node) if isinstance(node, ast.Attribute) else None
        if chain and chain[0] in bound:
            used.add(".".join([bound[chain[0]], *chain[1:]]))
    ours = {m for m in imported if m.partition(".")[0] == "skyscan"}
    theirs = {m for m in used if m.partition(".")[0] not in ("skyscan", *sys.stdlib_module_names)}
    return frozenset(ours), frozenset(theirs)


def conda_name(dotted: str) -> set[str]:
    """The conda packages an import path needs (its top-level package, and any listed above)."""
    parts = dotted.split(".")
    names = {IMPORT_TO_CONDA.get(parts[0], parts[0].replace("_", "-").lower())}
    names |= {
        IMPORT_TO_CONDA[p]
        for i in range(2, len(parts) + 1)
        if (p := ".".join(parts[:i])) in IMPORT_TO_CONDA
    }
    return names


def verb_requirements(verb: str) -> dict[str, set[str]]:
    """Conda package -> the skyscan modules needing it, for ``python -m skyscan.cli VERB``."""
    todo = ["skyscan.cli", "skyscan.cli.__main__", COMMANDS[verb][0]]
    seen, needs = set(), {}
    while todo:
        module = todo.pop()
        if module in seen or not _module_file(module):
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run too
        ours, theirs = _imports(module)
        todo += ours
        for dotted in theirs:
            for name in conda_name(dotted):
                needs.setdefault(name, set()).add(module)
    return needs


def check_imports(needs: dict[str, set[str]], packages: dict[str, str]) -> list[str]:
    """Problems: a package the modules import that the env file lacks."""
    return [
        f"{name} (imported by {', '.join(sorted(modules))})"
        for name, modules in sorted(needs.items())
        if name not in packages
    ]


# ------------------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.fixture(scope="module")
def rules():
    """accelerator -> rule name -> {conda: env path or None, shell, local}."""
    result = subprocess.run(
        [sys.executable, "-c", RULES_SCRIPT, str(ROOT), "cpu", "gpu"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def verb_of(rule) -> str | None:
    match = re.search(r"\{params\.skyscan\}\s+(\S+)", rule["shell"] or "")
    return match and match[1]


def test_there_are_cpu_and_cuda_envs():
    assert [p.name for p in ENV_FILES] == ["skyscan-cpu.yaml", "skyscan-cuda.yaml"]


@pytest.mark.parametrize("env", ENV_FILES, ids=lambda p: p.name)
def test_env_has_every_project_dependency(env, project):
    assert check_dependencies(project["dependencies"], env_packages(env)) == []
    python = Version(env_packages(env)["python"].lstrip("="))
    assert python in SpecifierSet(project["requires-python"])


def test_envs_differ_only_in_the_pytorch_build():
    cpu, cuda = (env_packages(ENVS / f"skyscan-{kind}.yaml") for kind in ("cpu", "cuda"))
    assert cpu.pop("pytorch").endswith("=cpu*") and cuda.pop("pytorch").endswith("=cuda*")
    assert cpu == cuda


def test_dependency_check_reports_a_missing_package_or_floor(project):
    packages = env_packages(ENVS / "skyscan-cpu.yaml")
    del packages["distributed"]
    packages["onnx"] = ">=1.10"
    assert check_dependencies(project["dependencies"], packages) == [
        "onnx>=1.15: onnx>=1.10 has another floor",
        "dask[distributed]>=2024.1: no distributed",
    ]


@pytest.mark.parametrize("accelerator", ["cpu", "gpu"])
def test_each_rule_env_has_what_its_verb_imports(rules, accelerator):
    checked = set()
    for name, rule in rules[accelerator].items():
        verb = verb_of(rule)
        if verb is None:
            continue
        assert verb in COMMANDS, f"rule {name} runs unknown verb {verb!r}"
        assert rule["conda"], f"rule {name} names no conda env"
        env = Path(rule["conda"]).resolve()
        assert env.parent == ENVS and env.is_file(), f"rule {name}: {env}"
        problems = check_imports(verb_requirements(verb), env_packages(env))
        assert problems == [], f"rule {name} (skyscan {verb}) in {env.name} lacks {problems}"
        checked.add(verb)
    for verb in INTERACTIVE_VERBS:  # run by people, not rules: the CPU env must still hold them
        problems = check_imports(verb_requirements(verb), env_packages(ENVS / "skyscan-cpu.yaml"))
        assert problems == [], f"skyscan {verb} in skyscan-cpu.yaml lacks {problems}"
    assert checked | set(INTERACTIVE_VERBS) == set(COMMANDS)  # every other verb runs in a rule


def test_train_runs_in_the_cuda_env_unless_on_cpu(rules):
    envs = {
        acc: {n: r["conda"] and Path(r["conda"]).name for n, r in rs.items()}
        for acc, rs in rules.items()
    }
    assert envs["cpu"]["train"] == "skyscan-cpu.yaml"
    assert envs["gpu"]["train"] == "skyscan-cuda.yaml"
    # local rules run in Snakemake's own process (the landing page), not in an env
    others = {
        envs["gpu"][n]
        for n, r in rules["gpu"].items()
        if n not in ("train", "all") and not (r["local"] and r["conda"] is None)
    }
    assert others == {"skyscan-cpu.yaml"}


def test_import_scan_finds_indirect_and_attribute_imports():
    train = verb_requirements("train")
    assert {"pytorch", "lightning", "onnx", "onnxruntime", "numpy"} <= set(train)
    assert "skyscan.train.export" in train["onnx"]  # torch.onnx.export, not an import
    search = verb_requirements("search")
    assert {"dask", "distributed", "dask-jobqueue", "healpy", "astropy"} <= set(search)
    assert "lenstronomy" not in set().union(*map(verb_requirements, COMMANDS))  # tests only


def test_import_check_reports_a_missing_package():
    packages = env_packages(ENVS / "skyscan-cpu.yaml")
    del packages["onnxruntime"]
    assert check_imports(verb_requirements("train"), packages) == [
        "onnxruntime (imported by skyscan.train.export)"
    ]


def test_rules_that_run_no_verb_are_local(rules):
    for name, rule in rules["gpu"].items():
        assert rule["local"] == (verb_of(rule) is None), name
    assert {n for n, r in rules["gpu"].items() if r["local"]} >= {"all", "stage_config"}
