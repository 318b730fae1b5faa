"""Loading and validating the workflow config against ``schemas/config.schema.yaml``.

The schema is the single source of defaults: the Snakefile and every ``skyscan`` command
validate through :func:`validate_config`, so a key means the same everywhere.  Errors are one
line naming the dotted key and what was expected.

The shared sections hold only what every science case reads (``seed``, ``simulate.n`` and
``shard_size``, ``dataset``, ``train``, ``evaluate.fpr`` and ``prevalence``, ``search``...);
each case's own settings are the top-level section of its name (``Case.config_schema``, e.g.
``lenses:``, ``transients:``).  A config holds its own case's section only: another case's
section is refused naming it, and a key that moved into a case's section
(``Case.moved_keys``) is refused naming its new place.  Every semantic check runs at load:
the schema's, :func:`check_cross_keys` and the case's ``check_config``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import yaml

from skyscan.core.errors import ConfigError

__all__ = [
    "ConfigError",
    "load_config",
    "validate_config",
    "no_detectability_selection",
    "config_hash",
    "schema",
    "given_keys",
    "sections_given",
    "STAGE_KEYS",
    "stage_keys",
    "stage_config",
]


@functools.lru_cache(maxsize=1)
def _shared_schema() -> dict:
    text = resources.files("skyscan").joinpath("schemas/config.schema.yaml").read_text()
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def schema(case: str | None = None) -> dict:
    """Return the config JSON schema (parsed YAML), with science cases' own sections.

    A case with settings of its own (``Case.config_schema``) gets the top-level key of its
    name, e.g. ``lenses:``, ``transients:``; the shared schema names no case.  A case's
    ``$defs`` join the shared ones (its ``$ref`` s are written ``#/$defs/...``).

    Parameters
    ----------
    case : str, optional
        Only this case's section: the schema a config of that case is validated with.  None
        (the default) gives every registered case's, to document them all.
    """
    from skyscan.core.case import default_registry

    out = copy.deepcopy(_shared_schema())
    for name in default_registry.names() if case is None else [case]:
        section = default_registry.get(name).config_schema
        if section is None:
            continue
        section = copy.deepcopy(dict(section))
        defs = out.setdefault("$defs", {})
        for key, value in section.pop("$defs", {}).items():
            if defs.setdefault(key, value) != value:
                raise ConfigError(
                    f"case {name!r}: its config schema's $defs.{key} differs from another "
                    "case's of the same name"
                )
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


def _error(error) -> ConfigError:
    """A schema error as one line, with the dotted key it is about."""
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        prefix = f"{path}." if path else ""
        return ConfigError(_describe(error), key=f"{prefix}{extra[0]}" if extra else path or None)
    return ConfigError(_describe(error), key=path or None)


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


def validate_config(config: Mapping, whole: bool = True, stage: str | None = None) -> dict:
    """Validate a config mapping and fill defaults.

    Parameters
    ----------
    config : mapping
        The parsed config (e.g. Snakemake's ``config``).  It is not modified.
    whole : bool
        The config describes a whole run (the workflow's), so the checks between keys
        (:func:`check_cross_keys`, the case's ``check_config``) apply to every key, given or
        defaulted.  False for a stage's part of a config (what a rule hands its command): a
        check then only runs when every key it reads was given (:func:`given_keys`).
    stage : str, optional
        The stage (a key of :data:`STAGE_KEYS`) whose command reads the config: only the
        checks between keys that stage reads run (:func:`stage_keys`), so e.g. ``skyscan
        simulate`` does not judge the dataset splits.  The schema checks every key whatever
        the stage.

    Returns
    -------
    dict
        A deep copy with every default filled in, holding the config's own case's section
        and no other case's.

    Raises
    ------
    ConfigError
        On the first problem, with the dotted key and the expectation in the message: a key
        that moved into a case's section names its new place; another case's section is
        refused.
    """
    from skyscan.core.case import default_registry

    instance = copy.deepcopy(dict(config))
    the_case = _case_of(instance, default_registry)
    _refuse_foreign_keys(instance, the_case.name, default_registry)
    validator = _validator_with_defaults()(schema(the_case.name))
    for _ in range(2):  # defaults that were filled can hold defaults (nested sections)
        errors = sorted(
            validator.iter_errors(instance), key=lambda e: (len(e.absolute_path), e.path)
        )
        if errors:
            raise _error(errors[0])
    given = None if whole else given_keys(config)
    if stage is not None:
        reads = stage_keys(stage, instance, the_case)
        given = reads if given is None else {k for k in given if _is_read(k, reads)}
    check_cross_keys(instance, the_case, given)
    own = the_case.name
    # A part that names neither the case nor a key of its section says nothing of it.
    if given is None or any(k in ("case", own) or k.startswith(f"{own}.") for k in given):
        the_case.check_config(instance, given)
    return instance


def _case_of(config: Mapping, registry):
    """The config's science case (``case``, else the schema's default)."""
    name = config.get("case", _shared_schema()["properties"]["case"]["default"])
    if not isinstance(name, str):
        raise ConfigError(f"config key 'case': expected string, got {name!r}", key="case")
    if name not in registry.names():
        raise ConfigError(
            f"config key 'case': unknown case {name!r} (allowed: {', '.join(registry.names())})",
            key="case",
        )
    return registry.get(name)


def _has_key(config: Mapping, dotted: str) -> bool:
    node = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _refuse_foreign_keys(config: Mapping, case: str, registry) -> None:
    """Keys that moved into a case's section, and other cases' sections, named in one line."""
    shared = set(_shared_schema()["properties"])
    for name in registry.names():
        other = registry.get(name)
        whose = (
            "" if name == case else f" (a setting of case {name!r}; this config's case is {case!r})"
        )
        for old, new in getattr(other, "moved_keys", {}).items():
            if _has_key(config, old):
                raise ConfigError(f"config key {old!r} moved to '{name}.{new}'{whose}", key=old)
        if name != case and name in config and name not in shared:
            raise ConfigError(
                f"config key {name!r}: the settings of case {name!r}, but this config's case "
                f"is {case!r} (a config holds its own case's section only)",
                key=name,
            )


def given_keys(config: Mapping) -> set[str]:
    """The keys a config gives: its top-level keys and, for a section, ``"section.key"``
    for each key in it (e.g. ``{"simulate", "simulate.n", "lenses", "lenses.bands"}``)."""
    out = set()
    for key, value in config.items():
        out.add(str(key))
        if isinstance(value, Mapping):
            out.update(f"{key}.{k}" for k in value)
    return out


def _is_read(key: str, reads: set[str]) -> bool:
    return key in reads or key.split(".", 1)[0] in reads


#: Fewest systems a split should expect: fewer cannot hold both classes reliably.
MIN_SPLIT_ROWS = 10

#: The shared top-level keys each workflow stage (and the command that runs it) reads,
#: besides the part of the case's own section that it reads (``Case.stage_settings``): only
#: edits to these rerun the stage, and only checks between these run for its command.
STAGE_KEYS = {
    "simulate": ("seed", "case", "simulate"),
    "dataset": ("seed", "case", "dataset"),
    "train": ("seed", "train"),
    "evaluate": ("evaluate",),
    "tiles": ("seed",),
    "search": ("search",),
    "skymaps": ("search", "skymaps"),
    "alerts": ("seed", "case", "simulate"),
}


def stage_keys(stage: str, config: Mapping, the_case) -> set[str]:
    """The keys stage ``stage`` reads: its shared ones (:data:`STAGE_KEYS`), and ``case``
    with ``"<case>.<key>"`` for each key of the case's section it reads."""
    if stage not in STAGE_KEYS:
        raise ValueError(f"unknown stage {stage!r} (allowed: {', '.join(STAGE_KEYS)})")
    keys = set(STAGE_KEYS[stage])
    part = the_case.stage_settings(config, stage) if the_case.config_schema else {}
    if part:
        keys |= {"case"} | {f"{the_case.name}.{k}" for k in part}
    return keys


def stage_config(config: Mapping, stage: str, the_case=None) -> dict:
    """The part of a validated config that stage ``stage`` reads (what the workflow hands
    the stage's command, so that editing another stage's settings does not rerun it): its
    shared keys and, with ``case``, the part of the case's section it reads."""
    if the_case is None:
        from skyscan.core.case import get_case

        the_case = get_case(config["case"])
    data = {k: copy.deepcopy(config[k]) for k in STAGE_KEYS[stage]}
    part = the_case.stage_settings(config, stage) if the_case.config_schema else {}
    if part:
        data["case"] = the_case.name
        data[the_case.name] = copy.deepcopy(dict(part))
    return data


def sections_given(given: set | None, *sections: str) -> bool:
    """Whether a check between keys reading ``sections`` applies: all of them were given,
    or the config is a whole one (``given`` is None).  A section is a top-level key
    (``"dataset"``) or a key of a section (``"lenses.bands"``), as :func:`given_keys`."""
    return given is None or all(s in given for s in sections)


def no_detectability_selection(the_case) -> ConfigError:
    """The error for ``dataset.detectable`` set for a case without
    :class:`~skyscan.core.case.DetectabilitySelection` (at load, and in the dataset stage)."""
    return ConfigError(
        f"config key 'dataset.detectable': case {the_case.name!r} has no detectability "
        "selection; set it to null",
        key="dataset.detectable",
    )


def check_cross_keys(config: Mapping, the_case, given: set | None = None) -> None:
    """Checks between shared keys that the schema cannot express, so that a config either
    runs ``rule all`` or fails at load time naming the key: models that suit the case, a
    detectability selection the case has, splits that get systems.  The checks between the
    keys of a case's own section are the case's (``Case.check_config``).

    Parameters
    ----------
    config : mapping
        A schema-valid config with defaults filled.
    the_case : skyscan.core.case.Case
    given : set of str, optional
        The keys given (None: a whole config, check everything); see
        :func:`sections_given`.

    Raises
    ------
    ConfigError
        Naming the first offending key.
    """
    from skyscan.core.case import DetectabilitySelection, ParameterEstimation

    model = config["train"]["model"]
    # A parameter network (train.target: parameters) is one of the case's parameter models.
    parameters = config["train"].get("target") == "parameters"
    estimates = isinstance(the_case, ParameterEstimation) and bool(the_case.parameters)
    if sections_given(given, "train", "case") and parameters and not estimates:
        raise ConfigError(
            f"config key 'train.target': case {the_case.name!r} has no physical parameters "
            "to estimate (use target: label)",
            key="train.target",
        )
    allowed = (the_case.parameter_models if estimates else ()) if parameters else the_case.models
    if sections_given(given, "train", "case") and allowed and model not in allowed:
        what = "parameter model" if parameters else "model"
        raise ConfigError(
            f"config key 'train.model': {model!r} is not a {what} for case "
            f"{the_case.name!r} (allowed: {', '.join(allowed)})",
            key="train.model",
        )
    if (
        sections_given(given, "dataset", "case")
        and config["dataset"].get("detectable") is not None
        and not isinstance(the_case, DetectabilitySelection)
    ):
        raise no_detectability_selection(the_case)
    splits = config["dataset"]["splits"]
    total = sum(splits.values())
    n = config["simulate"]["n"]
    # One meaning: the share of the n simulated systems in each split, written as fractions
    # (summing to 1) or as counts (summing to n).  Counts that sum to anything else were
    # silently rescaled before (600/300/300 of n = 400 gave about 200/100/100).
    if sections_given(given, "simulate", "dataset") and abs(total - 1) > 1e-6 and total != n:
        raise ConfigError(
            f"config key 'dataset.splits': {', '.join(f'{k} {v:g}' for k, v in splits.items())} "
            f"sum to {total:g}; give fractions that sum to 1 or counts of systems that sum to "
            f"simulate.n ({n})",
            key="dataset.splits",
        )
    for name, fraction in splits.items():
        if sections_given(given, "simulate", "dataset") and n * fraction / total < MIN_SPLIT_ROWS:
            raise ConfigError(
                f"config key 'simulate.n': {n} systems give split {name!r} about "
                f"{n * fraction / total:.0f} (dataset.splits.{name} = {fraction:g}); "
                f"need at least {MIN_SPLIT_ROWS}",
                key="simulate.n",
            )


def load_config(
    path: str | Path | None = None, overrides: Mapping | None = None, stage: str | None = None
) -> dict:
    """Read a YAML config file, apply ``overrides`` (a nested mapping) and validate it.

    Parameters
    ----------
    path : str or Path, optional
        YAML file.  ``None`` starts from an empty config (all defaults).
    overrides : mapping, optional
        Nested values that replace those of the file, e.g. ``{"simulate": {"n": 10}}``.
    stage : str, optional
        The stage whose command reads the config (a key of :data:`STAGE_KEYS`): only the
        checks between the keys it reads run (:func:`validate_config`).  None checks every
        key given.

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
    # A file may be one stage's part of a config (the workflow writes those): keys it leaves
    # out take their defaults but are not cross-checked against the others.
    return validate_config(data, whole=False, stage=stage)


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
