"""Loading and validating the workflow config against ``schemas/config.schema.yaml``.

The schema is the single source of defaults: the Snakefile and every ``skyscan`` command
validate through :func:`validate_config`, so a key means the same everywhere.  Errors are one
line naming the dotted key and what was expected.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import yaml

from skyscan.core.errors import ConfigError

__all__ = ["ConfigError", "load_config", "validate_config", "config_hash", "schema"]


def schema() -> dict:
    """Return the config JSON schema (parsed YAML), with each science case's own section.

    A case with settings of its own (``Case.config_schema``) gets the top-level key of its
    name, e.g. ``transients:``; the shared schema names no case.
    """
    from skyscan.core.case import default_registry

    text = resources.files("skyscan").joinpath("schemas/config.schema.yaml").read_text()
    out = yaml.safe_load(text)
    for name in default_registry.names():
        section = default_registry.get(name).config_schema
        if section is not None:
            out["properties"][name] = {"default": {}, **section}
    return out


def _validator_with_defaults():
    from jsonschema import Draft202012Validator, validators

    base_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, sub_schema):
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if name not in instance and "default" in prop:
                    instance[name] = copy.deepcopy(prop["default"])
        yield from base_properties(validator, properties, instance, sub_schema)

    # JSON Schema counts 1.0 as an integer; a count or an index given as 1.0 is a typo here
    # (and would reach range() or Dask as a float), so integers must be ints.
    strict_types = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda checker, value: isinstance(value, int) and not isinstance(value, bool)
    )
    return validators.extend(
        Draft202012Validator, {"properties": set_defaults}, type_checker=strict_types
    )


def _describe(error) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    where = f"config key '{path}'" if path else "config"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        prefix = f"{path}." if path else ""
        keys = ", ".join(f"'{prefix}{k}'" for k in extra)
        return f"unknown config key {keys} (allowed: {', '.join(allowed)})"
    if error.validator == "type":
        return f"{where}: expected {error.validator_value}, got {error.instance!r}"
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return f"{where}: {error.instance!r} is not one of {allowed}"
    if error.validator == "oneOf":
        return f"{where}: {error.instance!r} is not valid ({error.schema.get('description', '')})"
    if error.validator == "required":
        return f"{where}: {error.message}"
    return f"{where}: {error.message}"


def validate_config(config: Mapping, whole: bool = True) -> dict:
    """Validate a config mapping and fill defaults.

    Parameters
    ----------
    config : mapping
        The parsed config (e.g. Snakemake's ``config``).  It is not modified.
    whole : bool
        The config describes a whole run (the workflow's), so the checks between sections
        (:func:`check_cross_keys`, the case's) apply to every section, given or defaulted.
        False for a stage's part of a config (what a rule hands its command): a check then
        only runs when every section it reads was given.

    Returns
    -------
    dict
        A deep copy with every default filled in.

    Raises
    ------
    ConfigError
        On the first problem, with the dotted key and the expectation in the message.
    """
    instance = copy.deepcopy(dict(config))
    validator = _validator_with_defaults()(schema())
    errors = sorted(validator.iter_errors(instance), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        raise ConfigError(_describe(errors[0]))
    # Defaults that were filled can themselves hold defaults (nested sections): run once more.
    errors = sorted(validator.iter_errors(instance), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        raise ConfigError(_describe(errors[0]))
    from skyscan.core import case

    if instance["case"] not in case.default_registry.names():
        raise ConfigError(
            f"config key 'case': unknown case {instance['case']!r} "
            f"(allowed: {', '.join(case.default_registry.names())})",
            key="case",
        )
    the_case = case.default_registry.get(instance["case"])
    given = None if whole else set(config)
    check_cross_keys(instance, the_case, given)
    if sections_given(given, "case"):  # a part that names no case says nothing of it
        the_case.check_config(instance, given)
    return instance


#: Fewest systems a split should expect: fewer cannot hold both classes reliably.
MIN_SPLIT_ROWS = 10


def sections_given(given: set | None, *sections: str) -> bool:
    """Whether a cross-key check reading ``sections`` applies: all of them were given, or the
    config is a whole one (``given`` is None)."""
    return given is None or all(s in given for s in sections)


def check_cross_keys(config: Mapping, the_case, given: set | None = None) -> None:
    """Checks between keys that the schema cannot express, so that a config either runs
    ``rule all`` or fails at load time naming the key: models that suit the case, splits that
    get systems, and (for a case with a search) tiles and a catalogue in simulated bands.

    Parameters
    ----------
    config : mapping
        A schema-valid config with defaults filled.
    the_case : skyscan.core.case.Case
    given : set of str, optional
        The top-level sections given (None: a whole config, check everything); see
        :func:`sections_given`.

    Raises
    ------
    ConfigError
        Naming the first offending key.
    """
    model = config["train"]["model"]
    # A parameter network (train.target: parameters) is one of the case's parameter models.
    parameters = config["train"].get("target") == "parameters"
    if sections_given(given, "train", "case") and parameters and not the_case.parameters:
        raise ConfigError(
            f"config key 'train.target': case {the_case.name!r} has no physical parameters "
            "to estimate (use target: label)",
            key="train.target",
        )
    allowed = the_case.parameter_models if parameters else the_case.models
    if sections_given(given, "train", "case") and allowed and model not in allowed:
        what = "parameter model" if parameters else "model"
        raise ConfigError(
            f"config key 'train.model': {model!r} is not a {what} for case "
            f"{the_case.name!r} (allowed: {', '.join(allowed)})",
            key="train.model",
        )
    splits = config["dataset"]["splits"]
    total = sum(splits.values())
    n = config["simulate"]["n"]
    for name, fraction in splits.items():
        if sections_given(given, "simulate", "dataset") and n * fraction / total < MIN_SPLIT_ROWS:
            raise ConfigError(
                f"config key 'simulate.n': {n} systems give split {name!r} about "
                f"{n * fraction / total:.0f} (dataset.splits.{name} = {fraction:g}); "
                f"need at least {MIN_SPLIT_ROWS}",
                key="simulate.n",
            )
    bands = list(config["bands"])
    if "search" not in the_case.stages or not sections_given(given, "tiles", "bands"):
        return
    tiles = config["tiles"]
    catalog = tiles["catalog"]
    for key, used in (("band", [catalog["band"]]), ("color", catalog.get("color") or [])):
        missing = [b for b in used if b not in bands]
        if missing:
            raise ConfigError(
                f"config key 'tiles.catalog.{key}': band(s) {missing} are not simulated "
                f"(bands: {bands})",
                key=f"tiles.catalog.{key}",
            )
    if tiles["overlap"] >= tiles["size"]:
        raise ConfigError(
            f"config key 'tiles.overlap': {tiles['overlap']} pixels must be less than "
            f"tiles.size ({tiles['size']})",
            key="tiles.overlap",
        )
    stamp = config["simulate"]["stamp_size"]
    if (
        sections_given(given, "simulate")
        and stamp > tiles["overlap"] + 1
        and tiles["grid"] != [1, 1]
    ):
        raise ConfigError(
            f"config key 'tiles.overlap': {tiles['overlap']} pixels is less than a cutout "
            f"(simulate.stamp_size {stamp}): objects between tiles would be cut",
            key="tiles.overlap",
        )


def load_config(path: str | Path | None = None, overrides: Mapping | None = None) -> dict:
    """Read a YAML config file, apply ``overrides`` (a nested mapping) and validate it.

    Parameters
    ----------
    path : str or Path, optional
        YAML file.  ``None`` starts from an empty config (all defaults).
    overrides : mapping, optional
        Nested values that replace those of the file, e.g. ``{"simulate": {"n": 10}}``.

    Returns
    -------
    dict
        The validated config with defaults filled.
    """
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"config file {str(path)!r} is not valid YAML: {_yaml_problem(exc)}", path=path
            ) from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    data = _merge(data, overrides or {})
    # A file may be one stage's part of a config (the workflow writes those): sections it
    # leaves out take their defaults but are not cross-checked against the others.
    return validate_config(data, whole=False)


def _yaml_problem(exc) -> str:
    """One line for a YAML parse error: where (line, column) and what."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def _merge(base: dict, overrides: Mapping) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def config_hash(section: object) -> str:
    """A short stable hash of a config section (canonical JSON, SHA-256, 16 hex digits)."""
    blob = json.dumps(section, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
