"""The galaxy-galaxy strong-lens search (CMU DeepLens, Lanusse et al. 2018).

Positives are simulated lenses (an SIE + shear deflector with a lensed Sersic source); the
negatives are the same deflectors with nothing behind them and the classic impostors
(companions, rings, spirals, star blends).  Completeness is reported in Einstein radius x S/N
bins, with CMU DeepLens's headline cell (theta_E > 1.4", S/N > 20) beside the paper's 90%.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from skyscan.core.case import (
    CandidateAnnotation,
    Case,
    DetectabilitySelection,
    Gallery,
    Headline,
    ParameterEstimation,
    PhysicalParameter,
    Strata,
    Worst,
)
from skyscan.core.errors import ConfigError

__all__ = ["LensCase", "CASE", "DEEPLENS_PUBLISHED"]

#: Published CMU DeepLens figures (ANCHORS.md).
DEEPLENS_PUBLISHED = {
    "completeness_headline": 0.90,  # Lanusse et al. 2018: TPR at 99% rejection, θE>1.4", S/N>20
    "lfc_ground": {"auroc": 0.98, "tpr0": 0.09, "tpr10": 0.45},  # Metcalf et al. 2019
    "lfc_space": {"auroc": 0.92, "tpr0": 0.22, "tpr10": 0.29},
}

#: CMU DeepLens's headline selection (Lanusse et al. 2018, abstract)
HEADLINE_THETA_E = 1.4
HEADLINE_SNR = 20.0

#: The lenses on which the parameter network is judged: Einstein radius and best-band S/N.
PARAMETER_THETA_E = 1.0
PARAMETER_SNR = 20.0

#: The keys of the ``lenses:`` section each workflow stage reads (the others read none): only
#: edits to them rerun the stage.  ``simulate`` holds everything a stamp's bytes depend on.
SIMULATION_KEYS = (
    "survey",
    "surveys",
    "bands",
    "stamp_size",
    "supersampling",
    "exposures",
    "reference_band",
    "kinds",
    "neighbours",
    "population",
    "source_model",
    "snr_definition",
    "priors",
)
STAGE_SETTINGS = {
    "simulate": SIMULATION_KEYS,
    "evaluate": ("snr_band", "theta_E_bins", "snr_bins"),
    "tiles": (
        "survey",
        "surveys",
        "bands",
        "supersampling",
        "exposures",
        "reference_band",
        "priors",
        "tiles",
    ),
}


def _config_schema() -> dict:
    """The parsed ``config.schema.yaml`` of this package (read once)."""
    global _SCHEMA
    if _SCHEMA is None:
        from importlib import resources

        import yaml

        text = resources.files(__name__).joinpath("config.schema.yaml").read_text()
        _SCHEMA = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return _SCHEMA


_SCHEMA: dict | None = None


class LensCase(Case, DetectabilitySelection, ParameterEstimation, CandidateAnnotation):
    """Galaxy-galaxy strong lenses in LSST/DES-like cutouts."""

    name = "lenses"
    title = "galaxy-galaxy strong lenses (CMU DeepLens)"
    positive = "lens"
    positives = "lenses"
    negatives = "non-lenses"
    positive_kinds = ("lens",)
    negative_kinds = ("no_source", "companion", "ring", "spiral", "star_blend")
    stages = ("search",)
    verbs = {
        "make-tiles": (
            "skyscan.cases.lenses.cli.make_tiles",
            "render simulated survey tiles (FITS + WCS) with injected lenses",
        ),
        "inject": (
            "skyscan.cases.lenses.cli.inject",
            "paint simulated lensed arcs around catalogue galaxies in your FITS tiles",
        ),
    }
    models = ("fast", "deeplens")
    # The SIE + external shear of the simulation (lenstronomy's names and conventions), as
    # Hezaveh, Perreault Levasseur & Marshall (2017) estimate them with a network.
    parameters = (
        PhysicalParameter("theta_E", "arcsec", "log", "Einstein radius of the SIE"),
        PhysicalParameter("e1", "", "identity", "SIE ellipticity e1", "spin2_1"),
        PhysicalParameter("e2", "", "identity", "SIE ellipticity e2", "spin2_2"),
        PhysicalParameter("gamma1", "", "identity", "external shear gamma1", "spin2_1"),
        PhysicalParameter("gamma2", "", "identity", "external shear gamma2", "spin2_2"),
        PhysicalParameter("center_x", "arcsec", "identity", "lens centre x (stamp centre 0)", "x"),
        PhysicalParameter("center_y", "arcsec", "identity", "lens centre y (stamp centre 0)", "y"),
    )
    parameter_models = ("lensparams",)
    # Goals for an LSST coadd (the issue's; anchor: 10-15% on DES-like sims, Bom et al. 2019).
    parameter_goals = {
        "theta_E": {
            "median_abs_rel_error": {"max": 0.10, "stretch": 0.05},
            "median_rel_bias": {"max_abs": 0.02},
            "fraction_off_30pct": {"max": 0.05},
        },
        "coverage68": {"min": 0.63, "max": 0.73},
    }

    def parameter_selection(self, columns):
        """Lenses with theta_E >= 1" and a lensed-source S/N >= 20 in their best band."""
        from skyscan.cases.lenses.sim import best_band_snr

        snr = best_band_snr(columns)[0]
        theta = np.asarray(columns["theta_E"], dtype=float)
        with np.errstate(invalid="ignore"):
            mask = (theta >= PARAMETER_THETA_E) & (snr >= PARAMETER_SNR)
        return mask, f"theta_E >= {PARAMETER_THETA_E:g} and best-band S/N >= {PARAMETER_SNR:g}"

    galleries = (
        Gallery(
            "false_positives", Worst.TOP_NEGATIVES, "highest-scoring non-lenses (false positives)"
        ),
        Gallery("missed_lenses", Worst.BOTTOM_POSITIVES, "lowest-scoring lenses"),
    )

    #: Keys of the shared sections that moved into ``lenses:`` (old dotted key -> key in the
    #: section): a config that still uses one is refused naming the new place.
    moved_keys = {
        "survey": "survey",
        "surveys": "surveys",
        "bands": "bands",
        "simulate.stamp_size": "stamp_size",
        "simulate.supersampling": "supersampling",
        "simulate.exposures": "exposures",
        "simulate.reference_band": "reference_band",
        "simulate.kinds": "kinds",
        "simulate.neighbours": "neighbours",
        "simulate.priors": "priors",
        "evaluate.snr_band": "snr_band",
        "evaluate.theta_E_bins": "theta_E_bins",
        "evaluate.snr_bins": "snr_bins",
        "tiles": "tiles",
    }

    @property
    def config_schema(self) -> dict:
        """The ``lenses:`` section's schema (``config.schema.yaml`` beside this module)."""
        return _config_schema()

    def stage_settings(self, config: Mapping, stage: str) -> dict:
        """The keys of ``lenses:`` each stage reads: simulate the set-up and population,
        evaluate the strata, tiles the set-up, priors and tiles; the others none."""
        section = self.settings(config)
        part = {k: section[k] for k in STAGE_SETTINGS.get(stage, ()) if k in section}
        if stage == "simulate" and (section.get("population") or {}).get("table"):
            from skyscan.cases.lenses.sim.simulate import population_spec

            # A table population's rows follow the dataset's splits: they are part of what
            # the simulation reads (and a change to them reruns it).
            part["population"] = population_spec(config)
        return part

    def check_config(self, config: Mapping, given: set | None = None) -> None:
        """Checks between the keys of ``lenses:``: kinds to draw, distinct bands, the S/N
        band of the completeness simulated, increasing bins, and tiles whose catalogue uses
        simulated bands and whose overlap holds a cutout."""
        from skyscan.config import sections_given

        s = self.settings(config)
        bands = list(s["bands"])

        def given_(*keys):
            return sections_given(given, *(f"lenses.{k}" for k in keys))

        if given_("kinds") and not sum(s["kinds"].values()) > 0:
            raise ConfigError(
                "config key 'lenses.kinds': the fractions must not all be zero",
                key="lenses.kinds",
            )
        if given_("bands") and len(set(bands)) != len(bands):
            raise ConfigError(
                f"config key 'lenses.bands' repeats a band: {bands}", key="lenses.bands"
            )
        if given_("survey") or given_("bands") or given_("surveys"):
            # A survey or band the simulator does not know must fail at load (and so in
            # `snakemake -n`), not later in rule simulate with the reason only in its log.
            from skyscan.cases.lenses.sim.survey import get_survey

            try:
                survey = get_survey(s["survey"], s.get("surveys"))
                for name in bands:
                    survey.band(name)
            except ConfigError as exc:
                key = "lenses.survey" if "unknown survey" in str(exc) else "lenses.bands"
                raise ConfigError(f"config key {key!r}: {exc}", key=key) from None
        band = s["snr_band"]
        if given_("snr_band", "bands") and band not in bands:
            raise ConfigError(
                f"config key 'lenses.snr_band': {band!r} is not a simulated band "
                f"(bands: {', '.join(bands)})",
                key="lenses.snr_band",
            )
        for key in ("theta_E_bins", "snr_bins"):
            edges = list(s[key])
            if given_(key) and any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
                raise ConfigError(
                    f"config key 'lenses.{key}': bin edges must increase, got {edges}",
                    key=f"lenses.{key}",
                )
        if not given_("tiles"):
            return
        tiles = s["tiles"]
        catalog = tiles["catalog"]
        for key, used in (("band", [catalog["band"]]), ("color", catalog.get("color") or [])):
            missing = [b for b in used if b not in bands]
            if given_("bands") and missing:
                raise ConfigError(
                    f"config key 'lenses.tiles.catalog.{key}': band(s) {missing} are not "
                    f"simulated (lenses.bands: {bands})",
                    key=f"lenses.tiles.catalog.{key}",
                )
        if tiles["overlap"] >= tiles["size"]:
            raise ConfigError(
                f"config key 'lenses.tiles.overlap': {tiles['overlap']} pixels must be less "
                f"than lenses.tiles.size ({tiles['size']})",
                key="lenses.tiles.overlap",
            )
        stamp = s["stamp_size"]
        if given_("stamp_size") and stamp > tiles["overlap"] + 1 and tiles["grid"] != [1, 1]:
            raise ConfigError(
                f"config key 'lenses.tiles.overlap': {tiles['overlap']} pixels is less than a "
                f"cutout (lenses.stamp_size {stamp}): objects between tiles would be cut",
                key="lenses.tiles.overlap",
            )

    def score_columns(self, names) -> list[str]:
        """Metadata columns kept beside each score: identity, theta_E, magnification, S/N."""
        keep = ("index", "kind", "label", "theta_E", "magnification")
        return [c for c in names if c in keep or c.startswith("snr_")]

    def strata(self, meta: Mapping[str, Any], spec: Mapping) -> Strata:
        """Einstein radius x optimal-aperture S/N in ``spec["snr_band"]``."""
        band = spec["snr_band"]
        column = f"snr_{band}"
        if column not in meta:
            bands = [c[4:] for c in meta if c.startswith("snr_")]
            raise ConfigError(
                f"config key 'lenses.snr_band': {band!r} is not a band of the dataset "
                f"(allowed: {', '.join(bands)})",
                key="lenses.snr_band",
            )
        return Strata(
            row_values=np.asarray(meta["theta_E"], dtype=float),
            col_values=np.asarray(meta[column], dtype=float),
            row_bins=list(spec["theta_E_bins"]),
            col_bins=list(spec["snr_bins"]),
            row_label='Einstein radius θE (")',
            col_label=f"lensed-source S/N ({band} band, LensPop optimal aperture)",
            record={
                "theta_E_bins": spec["theta_E_bins"],
                "snr_bins": spec["snr_bins"],
                "snr_band": band,
            },
        )

    def headline(self, strata: Strata, passed: np.ndarray) -> dict:
        """Completeness for theta_E > 1.4" and S/N > 20, beside CMU DeepLens's 90%."""
        head = (strata.row_values > HEADLINE_THETA_E) & (strata.col_values > HEADLINE_SNR)
        return Headline(
            selection=f"theta_E > 1.4 and snr_{strata.record['snr_band']} > 20",
            n=int(head.sum()),
            completeness=float(passed[head].mean()) if head.any() else None,
            extra={
                "n_lenses": int(head.sum()),
                "deeplens_published": DEEPLENS_PUBLISHED["completeness_headline"],
            },
        )

    def comparison_table(self, metrics: Mapping) -> str:
        """Markdown table of skyscan's figures (with 95% intervals and sample sizes) beside
        the published CMU DeepLens ones, and whether the set-up is like for like."""
        head = metrics["headline"]
        lfc = DEEPLENS_PUBLISHED["lfc_ground"]
        op = metrics.get("operating_point", {})

        def fmt(v, ci=None):
            if v is None:
                return "n/a"
            return f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

        target = op.get("target_fpr", 0.01)
        rows = [
            (
                f'Completeness at {100 * (1 - target):g}% rejection, θE > 1.4" and S/N > 20',
                f"{fmt(head['completeness'], head.get('completeness_ci95'))} "
                f"({head['n_lenses']} lenses)",
                "0.90 (Lanusse et al. 2018, LSST g-band sims)",
            ),
            (
                "AUROC",
                fmt(metrics["auroc"], metrics.get("auroc_ci95")),
                f"{lfc['auroc']} (LFC ground, Metcalf et al. 2019)",
            ),
        ]
        tpr_map = metrics.get("tpr_at_fpr") or {"0.01": metrics.get("tpr_at_fpr_1pct")}
        for key, value in tpr_map.items():
            ci = (metrics.get("tpr_at_fpr_ci95") or {}).get(key)
            reason = (metrics.get("tpr_at_fpr_reason") or {}).get(key)
            rows.append(
                (
                    f"TPR at FPR {key}",
                    fmt(value, ci) if value is not None else f"n/a ({reason})" if reason else "n/a",
                    "-",
                )
            )
        rows += [
            ("TPR0", fmt(metrics["tpr0"]), f"{lfc['tpr0']} (LFC ground)"),
            ("TPR10", fmt(metrics["tpr10"]), f"{lfc['tpr10']} (LFC ground)"),
        ]
        if op:
            rows.append(
                (
                    "Operating point (threshold chosen on validation, rates on test)",
                    f"TPR {fmt(op.get('tpr'), op.get('tpr_ci95'))}, "
                    f"FPR {fmt(op.get('fpr'), op.get('fpr_ci95'))}",
                    "-",
                )
            )
        purity = metrics.get("purity")
        if purity and purity.get("purity") is not None:
            rows.append(
                (
                    f"Purity at prevalence {purity['prevalence']:g}",
                    f"{fmt(purity['purity'], purity.get('purity_ci95'))} "
                    f"(~{purity['per_1000_selected']:g} real per 1,000 selected)",
                    "-",
                )
            )
        n_neg = metrics.get("n_negative", metrics["n_test"] - metrics["n_positive"])
        lines = [
            f"| metric | skyscan ({metrics['model']}, {metrics['n_test']} test cutouts: "
            f"{metrics['n_positive']} lenses, {n_neg} non-lenses) | CMU DeepLens (published) |",
            "|---|---|---|",
        ] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
        lines += ["", "Brackets: 95% intervals (Wilson; AUROC by bootstrap).", ""]
        checks = metrics.get("population_checks")
        lines.append(self.like_for_like(metrics.get("setup"), checks))
        lines.append("")
        table = self.population_table(checks)
        if table:
            lines += [table, ""]
        by_row = metrics.get("cell_by_configuration")
        if by_row:
            lines.append(
                f"The cell's {by_row['n_lenses']} test lenses are {by_row['n_configurations']} "
                "LensPop configurations seen in several orientations and noise draws; "
                "intervals that resample configurations (thresholds chosen on validation):"
            )
            for name, label in (("operating", f"{100 * (1 - target):g}% rejection"),
                                ("val_fpr_0.001", "99.9% rejection")):  # fmt: skip
                if name in by_row:
                    c = by_row[name]
                    lines.append(
                        f"- {label}: {c['completeness']:.3f} "
                        f"[{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]"
                    )
            lines.append("")
        by_mag = metrics.get("completeness_by_deflector_mag")
        if by_mag and by_mag.get("bins"):
            lines.append(
                f"Completeness of all test lenses by the deflector's {by_mag['band']} magnitude, "
                f"at the operating threshold ({100 * (1 - target):g}% rejection; Wilson 95%):"
            )
            for b in by_mag["bins"]:
                snr = "" if b["median_snr"] is None else f", median S/N {b['median_snr']:.0f}"
                lines.append(
                    f"- {b['label']}: {fmt(b['completeness'], b['ci95'])} ({b['n']} lenses{snr})"
                    if b["n"]
                    else f"- {b['label']}: no lenses"
                )
            lines.append("")
        lines.append(
            "The Lens Finding Challenge figures come from other simulations (100,000 "
            "ground-based cutouts): compare trends, not third decimals. TPR0 and TPR10 depend "
            "on the test-set size (they count single false positives)."
        )
        return "\n".join(lines) + "\n"

    def extra_metrics(self, columns, labels, logits, thresholds) -> dict:
        """The test lenses' population against LensPop's best-epoch LSST lenses, the paper's
        (:func:`.likeforlike.population_checks`), and for a table population the headline
        cell with intervals over lens configurations at the operating threshold and at 0.1%
        FPR on validation (:func:`.likeforlike.cell_by_configuration`)."""
        from skyscan.cases.lenses.likeforlike import cell_by_configuration, population_checks

        wanted = {k: thresholds.get(k) for k in ("operating", "val_fpr_0.001")}
        return {
            "population_checks": population_checks(columns),
            "cell_by_configuration": cell_by_configuration(columns, logits, wanted),
            "completeness_by_deflector_mag": completeness_by_deflector_mag(
                columns, labels, logits, thresholds.get("operating")
            ),
        }

    @staticmethod
    def like_for_like(setup: Mapping | None, checks: Mapping | None = None) -> str:
        """Whether a run's set-up and test population match Lanusse et al. 2018's headline
        figure (:mod:`.likeforlike`), and if not, every way they differ."""
        from skyscan.cases.lenses.likeforlike import setup_differences

        if not setup:
            return "Set-up not recorded: the comparison with Lanusse et al. 2018 is indicative."
        differences = setup_differences(setup, checks)
        lines = []
        if not differences:
            lines.append(
                "**Like for like** with Lanusse et al. 2018's headline: LensPop's LSST "
                "best-epoch lenses (Collett 2015) in 45 x 45 single-epoch g-band stamps at "
                "LensPop's set-up, non-lenses the same deflectors without a source, and the "
                "test lenses' Einstein radii and S/N indistinguishable from LensPop's (tests "
                "below)."
            )
        else:
            lines.append(
                "**Not like for like** with Lanusse et al. 2018: " + "; ".join(differences) + "."
            )
        model = (setup.get("simulation") or {}).get("source_model", "sersic")
        sources = {
            "clumpy": "Sersic discs with star-forming clumps drawn from HST measurements",
            "sersic": "smooth Sersic profiles",
        }.get(model, model)
        lines.append(
            "Not tested, and different: the paper lensed real HST galaxies (PICS); skyscan's "
            f"sources are {sources} (lenses.source_model)."
        )
        return "\n".join(lines)

    @staticmethod
    def population_table(checks: Mapping | None) -> str:
        """Markdown table of the population tests (:func:`.likeforlike.population_checks`)."""
        from skyscan.cases.lenses.likeforlike import KS_ALPHA, KS_MAX_D

        if not checks or "tests" not in checks:
            return ""
        lines = [
            f"Test lenses against LensPop's {checks['n_reference']:,} LSST best-epoch lenses "
            f"(two-sample KS; agrees when p >= {KS_ALPHA:g} or D <= {KS_MAX_D:g}):",
            "",
            "| quantity | n | median (skyscan / LensPop) | KS D | p | agrees |",
            "|---|---|---|---|---|---|",
        ]
        for t in checks["tests"]:
            if t.get("agree") is None:
                lines.append(f"| {t['quantity']} | {t['n']} | - | - | - | {t.get('reason')} |")
                continue
            lines.append(
                f"| {t['quantity']} | {t['n']} | {t['median']:.2f} / "
                f"{t['median_reference']:.2f} | {t['ks_d']:.3f} | {t['p_value']:.2g} | "
                f"{'yes' if t['agree'] else 'no'} |"
            )
        share = checks["share_snr_gt_20"]
        if share["value"] is not None:
            lo, hi = share["ci95"]
            lines.append(
                f"| share with S/N_g > 20 | {share['n']} | {share['value']:.3f} "
                f"[{lo:.3f}, {hi:.3f}] / {share['reference']:.3f} | - | - | "
                f"{'yes' if share['agree'] else 'no'} |"
            )
        if checks.get("n_enriched"):
            lines += [
                "",
                f"{checks['n_enriched']} of the test lenses were drawn from the headline "
                "cell's rows only (lenses.population.enrich_cell), so that the cell holds "
                f"{checks['n_cell']} lenses: its conditional distribution is LensPop's, but "
                "figures over all lenses (AUROC, TPR) are over this enriched set. The all-lens "
                "tests above leave them out.",
            ]
        return "\n".join(lines)

    def detection_snr(self, columns: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """The lensed source's S/N in its best band (NaN for non-lenses)."""
        from skyscan.cases.lenses.sim import best_band_snr

        if not any(str(c).startswith("snr_") for c in columns):
            return None
        return best_band_snr(columns)[0]

    def detectable(self, columns, observation, criteria) -> np.ndarray:
        """LensPop's selection (Collett 2015) at the simulated survey's depth and seeing:
        S/N, magnification and resolved images in the best band
        (:func:`skyscan.cases.lenses.sim.detectable`; the seeing is the shards' PSF FWHM)."""
        from skyscan.cases.lenses.sim import detectable

        return detectable(columns, observation, criteria)

    def annotate_candidates(self, candidates, ra_column: str = "ra", dec_column: str = "dec"):
        """The nearest known lens within 2" of each candidate (lenscat's catalogue, the
        ``known`` extra), as ``known_name``, ``known_grade``, ``known_type`` and
        ``known_sep_arcsec``; without the catalogue the table is returned as it is, and the
        summary says why."""
        from skyscan.cases.lenses.known import add_known_lens_columns
        from skyscan.core.errors import SkyscanError

        if not len(candidates):
            return candidates, {"known_lenses": 0}
        import pyarrow as pa

        positions = pa.table(
            {"ra": candidates.column(ra_column), "dec": candidates.column(dec_column)}
        )
        try:
            matched = add_known_lens_columns(positions)
        except SkyscanError as exc:
            return candidates, {"known_lenses": None, "known_lenses_unavailable": str(exc)}
        meta = matched.schema.metadata or {}
        count = int(meta.get(b"known_lenses_matched", b"0"))
        extra = matched.select([c for c in matched.column_names if c.startswith("known_")])
        for name in extra.column_names:
            candidates = candidates.append_column(name, extra.column(name))
        return candidates, {"known_lenses": count}

    def caption(self, row: Mapping[str, Any], score: float) -> str:
        """Score, then the simulated truth: kind, and under a lens its Einstein radius and the
        lensed source's S/N in its best band (:func:`skyscan.viz.stamp_caption`)."""
        from skyscan.viz import stamp_caption

        lens = row.get("label") == 1
        snrs = [float(v) for k, v in row.items() if str(k).startswith("snr_") and v is not None]
        snrs = [v for v in snrs if np.isfinite(v)]
        return stamp_caption(
            ra=row.get("ra"),
            dec=row.get("dec"),
            tile=row.get("tile"),
            score=score,
            kind=row["kind"],
            truth=[
                ('θE={:.2f}"', row.get("theta_E") if lens else None),
                ("S/N={:.0f}", max(snrs) if lens and snrs else None),
            ],
        )

    def preview(self, shards, out, per_kind: int = 4):
        """Colour composites of every kind, labelled with θE and S/N (:mod:`.sim.preview`)."""
        from skyscan.cases.lenses.sim.preview import write_preview

        return write_preview(shards, out, per_kind=per_kind)

    def simulate(self, config: Mapping, out_dir, **options) -> list:
        """Simulate lenses and non-lenses into Parquet shards (:mod:`.sim.simulate`).

        ``options`` go to :func:`skyscan.cases.lenses.sim.simulate.run_simulation` (``shards``,
        ``workers``, ``show_progress``).
        """
        from skyscan.cases.lenses.sim.simulate import SimulationPlan, run_simulation

        return run_simulation(SimulationPlan.from_config(config), out_dir, **options)


CASE = LensCase()


#: Deflector magnitude bin edges of :func:`completeness_by_deflector_mag` (bright deflectors
#: hide faint arcs: the contrast the default run's bright-deflector completeness suffers from).
DEFLECTOR_MAG_EDGES = (18.0, 19.0, 20.0, 21.0)


def completeness_by_deflector_mag(columns, labels, logits, threshold) -> dict | None:
    """Completeness of the test lenses by their deflector's magnitude at one threshold.

    Parameters
    ----------
    columns : mapping
        The test split's metadata: ``lens_mag_<band>`` (the reddest of i, r, g present) and
        ``snr_<band>`` per row.
    labels, logits : ndarray
    threshold : float or None
        The logit threshold (the evaluation's operating one, chosen on validation).

    Returns
    -------
    dict or None
        ``band``, ``threshold`` and ``bins`` (``label``, ``n``, ``found``, ``completeness``,
        ``ci95`` (Wilson), ``median_snr`` of the lenses in the bin); None without a
        threshold or deflector magnitudes.
    """
    from skyscan.evaluate.metrics import wilson_interval

    band = next((b for b in "irg" if f"lens_mag_{b}" in columns), None)
    if threshold is None or band is None:
        return None
    lens = np.asarray(labels) == 1
    mag = np.asarray(columns[f"lens_mag_{band}"], dtype=float)[lens]
    snr_column = columns.get(f"snr_{band}")
    snr = np.asarray(snr_column, dtype=float)[lens] if snr_column is not None else None
    found = np.asarray(logits, dtype=float).reshape(len(labels), -1)[:, 0][lens] >= threshold
    edges = [-np.inf, *DEFLECTOR_MAG_EDGES, np.inf]
    bins = []
    for lo, hi in zip(edges, edges[1:], strict=False):
        inside = (mag >= lo) & (mag < hi)
        n, k = int(inside.sum()), int(found[inside].sum())
        label = (
            f"{band} < {hi:g}" if lo == -np.inf
            else f"{band} >= {lo:g}" if hi == np.inf
            else f"{lo:g} <= {band} < {hi:g}"
        )  # fmt: skip
        bins.append(
            {
                "label": label,
                "n": n,
                "found": k,
                "completeness": k / n if n else None,
                "ci95": wilson_interval(k, n),
                "median_snr": float(np.median(snr[inside])) if n and snr is not None else None,
            }
        )
    return {"band": band, "threshold": float(threshold), "bins": bins}
