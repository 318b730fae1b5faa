"""The science-case layer: what differs between science cases, behind one interface.

A science case (galaxy-galaxy strong lenses; later transient real/bogus stamps, light curves,
gravitational-wave sky maps) says how its examples are simulated, which kinds are positives
(label 1) and which negatives, the strata in which completeness is reported, the headline
selection and the published figures it is compared with, and what a gallery shows under each
stamp.  The shared stages (datasets, train, evaluate, search, skymaps) take a :class:`Case`
and never name one.

Cases are found by name in a registry (after sncosmo's and astropy's): every subpackage of
:mod:`skyscan.cases` that defines ``CASE`` is registered lazily under its module name, so
adding a case adds files and edits no shared module.  A duplicate name is refused unless
``force=True``; a miss lists what exists.  Tests can swap the default registry.

Examples
--------
>>> case = get_case("lenses")
>>> case.positive, case.positives
('lens', 'lenses')
>>> case.label(["lens", "ring"]).tolist()
[1, 0]
"""

from __future__ import annotations

import enum
import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from skyscan.core.errors import ConfigError

__all__ = [
    "Case",
    "Strata",
    "Headline",
    "Gallery",
    "Worst",
    "PhysicalParameter",
    "DetectabilitySelection",
    "ParameterEstimation",
    "CandidateAnnotation",
    "case_parameters",
    "CaseRegistry",
    "get_case",
    "register_case",
    "default_registry",
]


@dataclass(frozen=True)
class PhysicalParameter:
    """A physical parameter of the positives that a parameter network estimates.

    Attributes
    ----------
    name : str
        The metadata column holding its true value (e.g. ``theta_E``).
    unit : str
        Unit of the column (``arcsec``; empty for a dimensionless one).
    transform : str
        ``identity`` or ``log``: the network learns the transformed value (a scale parameter
        such as the Einstein radius is learnt in log, so its errors are relative).
    description : str
        One line for cards and reports.
    symmetry : str
        How it changes when the stamp is flipped or turned by quarter-turns (the training
        augmentation): ``scalar`` (it does not, e.g. the Einstein radius), ``x`` / ``y`` (a
        position on the sky, as the stamp's pixel columns / rows), ``spin2_1`` / ``spin2_2``
        (the two components of an ellipticity or a shear).
    """

    name: str
    unit: str = ""
    transform: str = "identity"
    description: str = ""
    symmetry: str = "scalar"


@dataclass(frozen=True)
class Strata:
    """Two-dimensional strata of the positives for completeness (e.g. theta_E x S/N).

    Attributes
    ----------
    row_values, col_values : ndarray
        The two stratifying values of each positive: the completeness grid's rows and columns.
    row_bins, col_bins : list of float
        Bin edges.
    row_label, col_label : str
        Axis labels for plots.
    record : dict
        What defines the strata (column names, bins), stored beside the grid in metrics.json
        so a later stage (sky maps) can rebuild the same strata with :meth:`Case.strata`.
    """

    row_values: np.ndarray
    col_values: np.ndarray
    row_bins: list
    col_bins: list
    row_label: str
    col_label: str
    record: dict = field(default_factory=dict)


class Worst(enum.Enum):
    """Which test samples a gallery shows: the mistakes a person should look at."""

    #: the highest-scoring negatives (the false positives at any threshold)
    TOP_NEGATIVES = "top_negatives"
    #: the lowest-scoring positives (the positives most easily missed)
    BOTTOM_POSITIVES = "bottom_positives"


@dataclass(frozen=True)
class Gallery:
    """A gallery the evaluation draws: ``{stem}.png`` of the samples ``worst`` selects."""

    stem: str
    worst: Worst
    title: str


@dataclass(frozen=True)
class Headline:
    """A case's headline figure: a completeness on a selection of the test positives, with
    its sample size (the evaluation adds the 95% Wilson interval, for every case).

    Attributes
    ----------
    selection : str
        The selection in words.
    n : int
        Positives in the selection.
    completeness : float or None
        Fraction of them above the operating threshold (None when ``n`` is 0).
    extra : dict
        Further JSON-able entries for ``metrics.json`` (e.g. the published figure beside it).
    """

    selection: str
    n: int
    completeness: float | None
    extra: dict = field(default_factory=dict)

    def to_dict(self, completeness_ci95=None) -> dict:
        """The ``headline`` entry of ``metrics.json``."""
        out = {"selection": self.selection, "n": int(self.n), **self.extra}
        out["completeness"] = self.completeness
        if completeness_ci95 is not None:
            out["completeness_ci95"] = completeness_ci95
        return out


class Case:
    """Base class of a science case; subclasses set the class attributes and methods.

    The defaults suit a binary classification of stamps whose table has a ``kind`` column.
    """

    #: registry name (the subpackage of :mod:`skyscan.cases`)
    name: ClassVar[str] = ""
    #: one line for ``--help`` and reports
    title: ClassVar[str] = ""
    #: nouns for reports: the positive class, its plural, the negatives
    positive: ClassVar[str] = "positive"
    positives: ClassVar[str] = "positives"
    negatives: ClassVar[str] = "negatives"
    #: kinds (values of the ``kind`` column) labelled 1, and those labelled 0
    positive_kinds: ClassVar[tuple[str, ...]] = ()
    negative_kinds: ClassVar[tuple[str, ...]] = ()
    #: galleries the evaluation draws
    galleries: ClassVar[tuple[Gallery, ...]] = (
        Gallery("false_positives", Worst.TOP_NEGATIVES, "highest-scoring negatives"),
        Gallery("missed_positives", Worst.BOTTOM_POSITIVES, "lowest-scoring positives"),
    )
    #: plots the evaluation writes besides the galleries (file stems)
    base_plots: ClassVar[tuple[str, ...]] = ("roc", "completeness", "scores_by_kind", "reliability")
    #: optional stages after the evaluation that the workflow runs for this case: "search"
    #: (the shared search of a HATS catalogue that the case's own rules name, see
    #: :meth:`workflow_rules`), "alerts" (alert packets scored by the case's own rules)
    stages: ClassVar[tuple[str, ...]] = ()
    #: the case's own command-line verbs: verb -> (module with ``parser()`` and ``main()``,
    #: one line for ``skyscan --help``), listed there under the case's name.  A verb may not
    #: repeat a shared verb or another case's.  The modules live under the case
    #: (``skyscan.cases.<name>.cli``) and import nothing heavy at module level.
    verbs: ClassVar[dict[str, tuple[str, str]]] = {}
    #: JSON schema (as a dict) of the case's own config section, ``config[name]``; None if
    #: the case has no settings of its own
    config_schema: ClassVar[dict | None] = None
    #: the registry names of the models that classify this case's stamps (``train.model``);
    #: empty accepts any registered model
    models: ClassVar[tuple[str, ...]] = ()

    def check_config(self, config: Mapping, given: set | None = None) -> None:
        """Cross-key checks of a schema-valid config that only this case can make (e.g. that
        the band binning its completeness is simulated); raise
        :class:`~skyscan.core.errors.ConfigError` naming the key.  Runs at load time, so it
        must be quick and import nothing heavy.  ``given`` is the set of top-level sections
        given, or None for a whole config: check only what reads given sections
        (:func:`skyscan.config.sections_given`)."""

    @property
    def kinds(self) -> tuple[str, ...]:
        """Every kind, positives first."""
        return self.positive_kinds + self.negative_kinds

    @property
    def evaluation_plots(self) -> tuple[str, ...]:
        """File stems of every PNG the evaluation stage writes for this case."""
        return self.base_plots + tuple(g.stem for g in self.galleries)

    def score_columns(self, names: Sequence[str]) -> list[str]:
        """The metadata columns (of ``names``) copied beside each score in the evaluation."""
        return [c for c in names if c in ("index", "kind", "label")]

    def label(self, kind: Sequence[str], strict: bool = True) -> np.ndarray:
        """Label (int8: 1 positive, 0 negative) of each kind.

        Parameters
        ----------
        kind : sequence of str
        strict : bool
            An unknown kind is an error (``True``, for training data) or a negative (``False``,
            e.g. the field galaxies and stars of survey tiles).
        """
        kind = np.asarray(kind, dtype=object)
        unknown = sorted(set(kind.tolist()) - set(self.kinds))
        if unknown and strict:
            raise ConfigError(
                f"case {self.name!r}: unknown kind(s) {', '.join(map(str, unknown))} "
                f"(allowed: {', '.join(self.kinds)})"
            )
        return np.isin(kind, self.positive_kinds).astype(np.int8)

    def strata(self, meta: Mapping[str, Any], spec: Mapping) -> Strata:
        """The strata of the positives in ``meta`` (columns of the positives only).

        Parameters
        ----------
        meta : mapping
            Column name -> array, restricted to positives.
        spec : mapping
            The case's stratification settings (the ``evaluate`` config section, or the
            ``record`` of an earlier :class:`Strata`).
        """
        raise NotImplementedError

    def headline(self, strata: Strata, passed: np.ndarray) -> Headline:
        """The case's headline figure: a completeness on a selection of the positives
        (``passed``: which positives of ``strata`` are above the operating threshold)."""
        return Headline("all positives", len(passed), float(passed.mean()) if len(passed) else None)

    def extra_metrics(
        self,
        columns: Mapping[str, np.ndarray],
        labels: np.ndarray,
        logits: np.ndarray,
        thresholds: Mapping[str, float | None],
    ) -> dict:
        """Case-specific figures added to metrics.json (default none).

        Parameters
        ----------
        columns : mapping
            The test split's metadata columns.
        labels, logits : ndarray
        thresholds : mapping
            Named logit thresholds (``validation``: the card's; ``score_0.5``: logit 0;
            ``operating``: the evaluation's, chosen on validation at ``evaluate.fpr``;
            ``val_fpr_0.001``: chosen on validation at 0.1%); a value may be None when the
            card has no threshold.
        """
        return {}

    def comparison_table(self, metrics: Mapping) -> str:
        """Markdown table of the evaluation's figures beside the published ones."""
        return ""

    def picture(self, stamp: np.ndarray, bands: Sequence[str]) -> np.ndarray | None:
        """An RGB picture (H, W', 3) uint8 of one ``(channels, H, W)`` stamp for galleries;
        ``None`` (the default) draws the bands as a colour composite (:mod:`skyscan.viz`)."""
        return None

    def preview(self, shards: Sequence, out, per_kind: int = 4):
        """Draw up to ``per_kind`` samples of every kind in ``shards`` into the PNG ``out`` and
        return its path; None (the default) leaves it to the shared preview
        (:func:`skyscan.data.preview.write_preview`: each sample as :meth:`picture` or the
        sample description draws it, one row per kind)."""
        return None

    def samples(self):
        """The case's sample description (a :class:`skyscan.data.samples.SampleDescription`:
        what a sample is, its preprocessing, augmentation, test-time averaging and picture);
        None, the default, means multi-band image stamps
        (:class:`skyscan.data.samples.Stamps`)."""
        return None

    def workflow_rules(self) -> str | None:
        """The case's own Snakemake rules (``workflow.smk`` beside the case's module), which
        the Snakefile includes after the shared ones, or None.  They make what the case's
        stages need from outside the shared stages (e.g. the lens case's simulated survey
        tiles) and say where the shared search finds its inputs (``SEARCH_TABLE``: the
        catalogue table to import; ``SEARCH_INDEX``: a tile index, or None when the samples
        are the catalogue's own rows)."""
        import importlib.util
        from pathlib import Path

        spec = importlib.util.find_spec(type(self).__module__)
        if spec is None or not spec.origin:
            return None
        path = Path(spec.origin).parent / "workflow.smk"
        if spec.submodule_search_locations is None:  # a plain module: no folder of its own
            return None
        return str(path) if path.is_file() else None

    def load_models(self) -> None:
        """Register the case's own networks with :mod:`skyscan.models`: import the ``models``
        subpackage of the case's module when there is one (heavy: torch), so that
        :func:`skyscan.models.get_model` finds them by name."""
        import importlib.util

        package = type(self).__module__
        if importlib.util.find_spec(package) is None:
            return
        module = importlib.import_module(package)
        if not hasattr(module, "__path__"):  # a plain module (e.g. a test's case)
            return
        if importlib.util.find_spec(f"{package}.models") is not None:
            importlib.import_module(f"{package}.models")

    def settings(self, config: Mapping) -> dict:
        """The case's own config section with its defaults (empty if it has none)."""
        return dict(config.get(self.name, {})) if self.config_schema else {}

    def stage_settings(self, config: Mapping, stage: str) -> dict:
        """The part of the case's section that workflow stage ``stage`` reads (the whole
        section by default): only edits to it rerun that stage."""
        return self.settings(config)

    def caption(self, row: Mapping[str, Any], score: float) -> str:
        """The text under a stamp in a gallery (``row``: its metadata)."""
        return f"{row.get('kind', '')} p={score:.3f}"

    def simulate(self, config: Mapping, out_dir, **options) -> list:
        """Simulate the configured examples into Parquet shards; returns their paths.

        ``options``: ``shards`` (indices to write, default all), ``workers`` (processes),
        ``show_progress``.  Shards must carry ``kind``, ``label``, ``index`` and an ``image``
        column as :mod:`skyscan.data.shards` describes.
        """
        raise NotImplementedError


# --------------------------------------------------------------------------------------
# Optional capabilities: a case that has one also derives from its class (e.g.
# ``class LensCase(Case, DetectabilitySelection, ParameterEstimation, CandidateAnnotation)``);
# the shared stages ask ``isinstance`` and leave out what a case lacks.


class DetectabilitySelection:
    """A case whose simulated positives can be cut to those the survey would detect (the
    config's ``dataset.detectable`` selection), e.g. LensPop's S/N and resolution criteria."""

    def detectable(
        self, columns: Mapping[str, np.ndarray], observation: Mapping, criteria: Mapping
    ) -> np.ndarray:
        """Mask of the rows the survey could detect.

        Parameters
        ----------
        columns : mapping
            Column name -> array of the simulated rows.
        observation : mapping
            A shard's schema metadata (``bands``, ``psf``, ``pixel_scale``, ``survey``...).
        criteria : mapping
            The config's ``dataset.detectable`` section.
        """
        raise NotImplementedError

    def detection_snr(self, columns: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """Each row's S/N at the simulated depth (e.g. in its best band), for the dataset
        stage's below-detection warning; None when the rows carry none."""
        return None


class ParameterEstimation:
    """A case whose positives have physical parameters that a network estimates
    (``train.target: parameters``; the lens case's Einstein radius, ellipticity, shear)."""

    #: the parameters, in output order
    parameters: ClassVar[tuple[PhysicalParameter, ...]] = ()
    #: the registry names of the models that estimate them
    parameter_models: ClassVar[tuple[str, ...]] = ()
    #: goals of the estimates on the selection of :meth:`parameter_selection`, e.g.
    #: ``{"theta_E": {"median_abs_rel_error": 0.10, ...}}`` (recorded beside the metrics)
    parameter_goals: ClassVar[dict] = {}

    def parameter_selection(self, columns: Mapping[str, np.ndarray]) -> tuple[np.ndarray, str]:
        """The positives on which the estimates are judged (a boolean mask of the rows of
        ``columns``) and the selection in words; by default every row."""
        n = len(next(iter(columns.values())))
        return np.ones(n, dtype=bool), "all"


class CandidateAnnotation:
    """A case that adds to a search's candidates what is known of the sky (the lens case:
    the nearest known lens)."""

    def annotate_candidates(self, candidates, ra_column: str = "ra", dec_column: str = "dec"):
        """Columns added to the candidates (a pyarrow table in, the same rows out).

        Returns
        -------
        (pyarrow.Table, dict)
            The table and a summary for the search's ``summary.json``.
        """
        raise NotImplementedError


def case_parameters(case) -> tuple[PhysicalParameter, ...]:
    """The physical parameters ``case`` estimates; empty for a case without
    :class:`ParameterEstimation`."""
    return tuple(case.parameters) if isinstance(case, ParameterEstimation) else ()


#: Environment variable naming modules that define a ``CASE`` outside :mod:`skyscan.cases`
#: (comma-separated ``NAME=module`` or ``module``; the name defaults to the module's last part).
CASES_ENV = "SKYSCAN_CASES"

#: Entry-point group under which an installed package registers its cases
#: (``NAME = "package.module"``, the module defining ``CASE``).
ENTRY_POINT_GROUP = "skyscan.cases"


def external_cases() -> dict[str, str]:
    """Cases that live outside skyscan: name -> module defining ``CASE``.

    From installed packages' ``skyscan.cases`` entry points, then the ``SKYSCAN_CASES``
    environment variable (so a case in a project folder, or a test's, runs through the CLI
    and the workflow, whose jobs inherit the variable).  Modules are imported only when the
    case is asked for.
    """
    import os
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    for item in os.environ.get(CASES_ENV, "").split(","):
        item = item.strip()
        if not item:
            continue
        name, _, module = item.rpartition("=")
        found[name or module.rsplit(".", 1)[-1]] = module
    return found


class CaseRegistry:
    """A lazy name -> case registry.

    Parameters
    ----------
    package : str or None
        Subpackages of this package that define ``CASE`` are registered lazily under their
        module name (``None``: no discovery, for tests).
    """

    def __init__(self, package: str | None = "skyscan.cases"):
        self._loaders: dict[str, Callable[[], Case]] = {}
        self._loaded: dict[str, Case] = {}
        self._package = package
        self._discovered = package is None

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self._package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name.startswith("_") or info.name in self._loaders:
                continue
            module = f"{self._package}.{info.name}"
            self._loaders[info.name] = lambda module=module: importlib.import_module(module).CASE
        for name, module in external_cases().items():
            if name in self._loaders:
                raise ConfigError(
                    f"case {name!r} from {module} is already a built-in case (rename it)"
                )
            self._loaders[name] = lambda module=module: importlib.import_module(module).CASE

    def register(self, case_or_loader, name: str | None = None, force: bool = False) -> None:
        """Add a case (or a zero-argument loader of one) under ``name``.

        Raises
        ------
        ConfigError
            If ``name`` is taken and ``force`` is false.
        """
        self._discover()
        if isinstance(case_or_loader, Case):
            case = case_or_loader
            name = name or case.name
            loader = lambda: case  # noqa: E731
        else:
            loader = case_or_loader
        if not name:
            raise ConfigError("a case needs a name")
        if name in self._loaders and not force:
            raise ConfigError(f"case {name!r} is already registered (pass force=True to replace)")
        self._loaders[name] = loader
        self._loaded.pop(name, None)

    def names(self) -> list[str]:
        """Registered case names, sorted."""
        self._discover()
        return sorted(self._loaders)

    def get(self, name: str) -> Case:
        """The case called ``name``; an unknown name lists those that exist."""
        self._discover()
        if name not in self._loaders:
            raise ConfigError(f"unknown case {name!r} (allowed: {', '.join(self.names())})")
        if name not in self._loaded:
            case = self._loaders[name]()
            if not isinstance(case, Case):
                raise ConfigError(f"case {name!r} does not define a skyscan Case")
            self._loaded[name] = case
        return self._loaded[name]


#: The registry the stages use; tests may replace it (``skyscan.core.case.default_registry``).
default_registry = CaseRegistry()


def get_case(name: str) -> Case:
    """The registered case called ``name`` (see :class:`CaseRegistry`)."""
    return default_registry.get(name)


def register_case(case, name: str | None = None, force: bool = False) -> None:
    """Register a case (or a loader of one) in the default registry."""
    default_registry.register(case, name, force)
