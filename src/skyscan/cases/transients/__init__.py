"""Transient real/bogus classification of difference-image stamps (Deep-HiTS, ZTF braai).

A detection is a triplet: science, reference and their PSF-matched difference (plus an S/N
channel for the HiTS-like set-up).  Positives ("real") are point sources on galaxy hosts,
hostless transients and variable stars; negatives ("bogus") are subtraction dipoles (of stars
and faint galaxies, and of bright galaxy cores misregistered by a fraction of a pixel), cosmic
rays, bad pixels and columns, saturated-star residuals, PSF-mismatch residuals, CCD edges,
optical ghosts and diffraction spikes of bright stars beyond the stamp.
Completeness is reported per magnitude x S/N bin; the comparison is with braai (Duev et al.
2019: FNR 1.1%, FPR 2.9% at score 0.5) and Deep-HiTS (Cabrera-Vives et al. 2017: accuracy
99.47%, random forest 98.98%), on skyscan's own simulations.

Heavy imports (the simulator, torch) happen inside the methods: the registry loads this module
whenever a config is validated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from skyscan.core.case import Case, Gallery, Headline, Strata, Worst
from skyscan.core.errors import ConfigError

__all__ = [
    "TransientCase",
    "CASE",
    "PUBLISHED",
    "REAL_KINDS",
    "BOGUS_KINDS",
    "DEFAULT_KIND_FRACTIONS",
]

#: The kinds and their default fractions, here (not in the simulator, which imports torch
#: through a simulator) because the registry loads this module whenever a config is read.
REAL_KINDS = ("host_sn", "hostless", "variable_star")
BOGUS_KINDS = (
    "dipole",
    "cosmic_ray",
    "bad_pixel",
    "bright_star",
    "psf_mismatch",
    "edge",
    "core_dipole",
    "ghost",
    "spike",
)

#: S/N in the difference image above which a real transient counts as detected (ZTF alerts
#: and HiTS candidates are 5-sigma detections).
DETECTION_SNR = 5.0

#: Published figures (ANCHORS.md), at score threshold 0.5.
PUBLISHED = {
    "braai": {"fnr": 0.011, "fpr": 0.029, "source": "Duev et al. 2019 (ZTF braai, VGG6)"},
    "deephits": {
        "accuracy": 0.9947,
        "random_forest_accuracy": 0.9898,
        "source": "Cabrera-Vives et al. 2017 (Deep-HiTS)",
    },
}

#: Real and bogus half and half; the bogus share keeps psf_mismatch (the hardest kind) at 0.07
#: and makes room for core_dipole, ghost and spike from the others.
DEFAULT_KIND_FRACTIONS = {
    "host_sn": 0.25,
    "hostless": 0.15,
    "variable_star": 0.1,
    "dipole": 0.08,
    "cosmic_ray": 0.08,
    "bad_pixel": 0.07,
    "bright_star": 0.06,
    "psf_mismatch": 0.07,
    "edge": 0.04,
    "core_dipole": 0.06,
    "ghost": 0.02,
    "spike": 0.02,
}

#: The keys of the ``transients`` section the simulator reads (all that a triplet's bytes
#: depend on), and those of the completeness strata.
SIMULATION_KEYS = (
    "setup",
    "kinds",
    "mag_min",
    "nuclear_fraction",
    "variable_delta_max",
    "field_stars",
    "mag_mode",
)
STRATA_KEYS = ("mag_bins", "snr_bins")
#: The keys each workflow stage reads (the others read none): only edits to them rerun it.
STAGE_SETTINGS = {
    "simulate": SIMULATION_KEYS,
    "evaluate": STRATA_KEYS,
    "alerts": (*SIMULATION_KEYS, "alerts"),
}

CONFIG_SCHEMA = {
    "description": "The transient real/bogus case (used when case: transients).",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "setup": {
            "description": 'Survey set-up: ztf (1"/px, 63x63, science/reference/difference) '
            'or hits (0.27"/px, 21x21, plus an S/N channel).',
            "enum": ["ztf", "hits"],
            "default": "ztf",
        },
        "kinds": {
            "description": "Relative fractions of each kind (real: host_sn, hostless, "
            "variable_star; bogus: dipole, cosmic_ray, bad_pixel, bright_star, psf_mismatch, "
            "edge, core_dipole, ghost, spike). A kind left out is not simulated; they must "
            "not all be zero.",
            "type": "object",
            "additionalProperties": False,
            "properties": {k: {"type": "number", "minimum": 0} for k in REAL_KINDS + BOGUS_KINDS},
            "default": dict(DEFAULT_KIND_FRACTIONS),
        },
        "mag_min": {
            "description": "Brightest transient magnitude (AB), at least 2 mag brighter "
            "than the set-up's 5-sigma limit; the faintest is the limit + 0.5, so some are "
            "below detection.",
            "type": "number",
            "default": 15.0,
        },
        "real_alerts": {
            "description": "Real ZTF alerts carrying ZTF's drb (Avro or broker Parquet), "
            "scored by the rule check_real_alerts after training to show how the model "
            "carries to real data (evaluation/real_alerts.md, .png). null (the default) "
            "skips the check. The public development set is fetched by make setup.",
            "type": ["string", "null"],
            "default": None,
        },
        "mag_mode": {
            "description": "Most common magnitude of the real kinds: null (the default) draws "
            "them uniform from mag_min to the limit + 0.5; a number draws them triangular "
            "with this mode, as alert counts rise towards the limit and fall where detection "
            "fails (ZTF's development set of real alerts: median 18.1, 16-84% 16.3-19.2; the "
            "mode 19.5 gives 18.2 and 16.2-19.7).",
            "type": ["number", "null"],
            "default": None,
        },
        "nuclear_fraction": {
            "description": "Fraction of the host_sn kind that is nuclear (an AGN or blazar "
            "flare, a tidal disruption): at the centre of a compact host brighter than the "
            "change by 0-2.5 mag, so that the difference is a small part of the science "
            "image's peak, as in real ZTF alerts of galaxy cores "
            "(scripts/real_vs_sim_stamps.py). 0 keeps every one offset within its host. Half "
            "of them fade (the point source in the reference only).",
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.0,
        },
        "variable_delta_max": {
            "description": "Largest change (mag) of a variable star between reference and "
            "science; the change is uniform from 0.1 to this, brighter or fainter with equal "
            "odds. Blazars and Miras in real ZTF alerts change by more than 2 mag.",
            "type": "number",
            "exclusiveMinimum": 0.1,
            "maximum": 5,
            "default": 1.5,
        },
        "field_stars": {
            "description": "Mean number of field stars around each detection, of every kind "
            "(brighter than the limit + 1 mag; counts rising 0.3 dex per mag; none within "
            "2 FWHM of the detection), in both images, the science's misregistered by "
            "0.02-0.3 px so that bright ones leave dipoles beside the detection, as in real "
            "alerts. Each "
            "detection's own mean is log-uniform from a third to three times this (high "
            "latitudes to crowded fields). 0 gives none.",
            "type": "number",
            "minimum": 0,
            "maximum": 40,
            "default": 0.0,
        },
        "mag_bins": {
            "description": "Magnitude bin edges of the completeness grid (increasing).",
            "type": "array",
            "items": {"type": "number"},
            "minItems": 2,
            "default": [15, 17, 18, 19, 20, 21, 25],
        },
        "snr_bins": {
            "description": "Difference-image S/N bin edges of the completeness grid (increasing).",
            "type": "array",
            "items": {"type": "number"},
            "minItems": 2,
            "default": [0, 5, 10, 20, 1000000],
        },
        "alerts": {
            "description": "Demonstration alert packets written from fresh simulated "
            "detections and scored by `skyscan score-alerts` at the end of the workflow.",
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": {
                "n": {"type": "integer", "minimum": 1, "default": 200},
                "format": {"enum": ["avro", "parquet"], "default": "avro"},
            },
        },
    },
}


def _stretch(channel: np.ndarray) -> np.ndarray:
    """A grey asinh stretch of one channel to 0..255: background mid-grey, sources white,
    negative residuals (dipoles, over-subtraction) dark; softened at twice the noise."""
    centre = np.median(channel)
    sigma = 1.4826 * np.median(np.abs(channel - centre)) or 1.0
    x = channel - centre
    top = max(float(np.percentile(np.abs(x), 99.9)), 5 * sigma)
    v = np.arcsinh(x / (2 * sigma)) / np.arcsinh(top / (2 * sigma))
    return ((np.clip(v, -1, 1) + 1) / 2 * 255).astype(np.uint8)


class TransientCase(Case):
    """Real/bogus classification of transient difference-image triplets."""

    name = "transients"
    title = "transient real/bogus stamps (Deep-HiTS, ZTF braai)"
    positive = "real detection"
    positives = "real detections"
    negatives = "bogus detections"
    positive_kinds = REAL_KINDS
    negative_kinds = BOGUS_KINDS
    stages = ("alerts",)
    verbs = {
        "make-alerts": (
            "skyscan.cases.transients.cli.make_alerts",
            "write demonstration alert packets of simulated detections",
        ),
        "score-alerts": (
            "skyscan.cases.transients.cli.score_alerts",
            "score ZTF alerts (Avro, Parquet, FITS triplets) with a real/bogus model",
        ),
        "check-real-alerts": (
            "skyscan.cases.transients.cli.check_real_alerts",
            "compare a real/bogus model's scores with ZTF's drb on real alerts",
        ),
    }
    models = ("vgg6", "deephits")
    config_schema = CONFIG_SCHEMA
    galleries = (
        Gallery("false_positives", Worst.TOP_NEGATIVES, "highest-scoring bogus detections"),
        Gallery("missed_real", Worst.BOTTOM_POSITIVES, "lowest-scoring real detections"),
    )

    def stage_settings(self, config: Mapping, stage: str) -> dict:
        """simulate: the simulator's keys; evaluate: the strata's bins; alerts: the
        simulator's keys and the alerts'; the other stages read none."""
        section = self.settings(config)
        return {k: section[k] for k in STAGE_SETTINGS.get(stage, ()) if k in section}

    def check_config(self, config: Mapping, given: set | None = None) -> None:
        """Checks between the keys of ``transients:`` (the schema has checked each alone):
        kinds to draw, a brightest magnitude at least 2 mag above the set-up's limit (the
        simulator draws from it to the limit + 0.5), increasing bin edges."""
        from skyscan.config import sections_given

        s = self.settings(config)
        if sections_given(given, "transients.kinds") and not sum(s["kinds"].values()) > 0:
            raise ConfigError(
                "config key 'transients.kinds': the fractions must not all be zero",
                key="transients.kinds",
            )
        if given is None or given & {"transients.mag_min", "transients.setup"}:
            from skyscan.cases.transients.simulate import SETUPS

            setup, mag_min = SETUPS[s["setup"]], s["mag_min"]
            if not mag_min <= setup.limiting_mag - 2:
                raise ConfigError(
                    f"config key 'transients.mag_min': {mag_min} must be at least 2 mag "
                    f"brighter than the {setup.name} limit {setup.limiting_mag}",
                    key="transients.mag_min",
                )
        if given is None or given & {
            "transients.mag_mode",
            "transients.mag_min",
            "transients.setup",
        }:
            from skyscan.cases.transients.simulate import SETUPS

            top = SETUPS[s["setup"]].limiting_mag + 0.5
            mode = s["mag_mode"]
            if mode is not None and not s["mag_min"] <= mode <= top:
                raise ConfigError(
                    f"config key 'transients.mag_mode': {mode} must lie between mag_min "
                    f"{s['mag_min']} and the faintest simulated magnitude {top}",
                    key="transients.mag_mode",
                )
        for key in STRATA_KEYS:
            edges = list(s[key])
            if sections_given(given, f"transients.{key}") and any(
                b <= a for a, b in zip(edges, edges[1:], strict=False)
            ):
                raise ConfigError(
                    f"config key 'transients.{key}': bin edges must increase, got {edges}",
                    key=f"transients.{key}",
                )

    def score_columns(self, names) -> list[str]:
        """Identity, magnitude, S/N and seeing beside each score."""
        keep = ("index", "kind", "label", "mag", "snr", "fwhm_science", "host_mag")
        return [c for c in names if c in keep]

    def strata(self, meta: Mapping[str, Any], spec: Mapping) -> Strata:
        """Transient magnitude x difference-image S/N."""
        # Checked at load (check_config); a spec without them takes the schema's defaults.
        mag_bins = list(spec.get("mag_bins", CONFIG_SCHEMA["properties"]["mag_bins"]["default"]))
        snr_bins = list(spec.get("snr_bins", CONFIG_SCHEMA["properties"]["snr_bins"]["default"]))
        return Strata(
            row_values=np.asarray(meta["mag"], dtype=float),
            col_values=np.asarray(meta["snr"], dtype=float),
            row_bins=mag_bins,
            col_bins=snr_bins,
            row_label="transient magnitude (AB)",
            col_label="S/N in the difference image",
            record={"mag_bins": mag_bins, "snr_bins": snr_bins},
        )

    def headline(self, strata: Strata, passed: np.ndarray) -> dict:
        """Completeness of the real detections with S/N > 5 (the usual detection cut)."""
        sel = strata.col_values > 5
        return Headline(
            selection="real detections with difference-image S/N > 5",
            n=int(sel.sum()),
            completeness=float(passed[sel].mean()) if sel.any() else None,
            extra={"n_real": int(sel.sum())},
        )

    def extra_metrics(self, columns, labels, logits, thresholds) -> dict:
        """Rates on the detectable set (real with S/N > 5, all bogus), as the papers' data
        holds only detections; with Wilson 95% intervals."""
        from skyscan.evaluate.metrics import rates_at

        snr = np.asarray(columns["snr"], dtype=float)
        keep = (labels == 0) | (snr > DETECTION_SNR)
        rates = {
            name: rates_at(labels[keep], logits[keep], t)
            for name, t in thresholds.items()
            if t is not None
        }
        selection = f"real detections with difference-image S/N > {DETECTION_SNR:g}, all bogus"
        return {"detectable": {"selection": selection, **rates}}

    def comparison_table(self, metrics: Mapping) -> str:
        """skyscan's rates at score 0.5 and at the validation threshold beside the papers."""

        def rate(block, name):
            if not block or block.get(name) is None:
                return "n/a"
            lo, hi = block[f"{name}_ci95"] or (float("nan"), float("nan"))
            n = block["n_positive"] if name in ("fnr", "tpr") else block["n_negative"]
            if name == "accuracy":
                n = block["n_positive"] + block["n_negative"]
            return f"{100 * block[name]:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}] (n={n})"

        at = metrics.get("at_thresholds", {})
        half, val = at.get("score_0.5"), at.get("validation")
        det = metrics.get("detectable", {})
        dhalf, dval = det.get("score_0.5"), det.get("validation")
        braai, hits = PUBLISHED["braai"], PUBLISHED["deephits"]
        lines = [
            f"| metric | skyscan {metrics['model']} at score 0.5 | skyscan at the validation "
            "threshold | published |",
            "|---|---|---|---|",
            f"| FNR, all real (down to 0.5 mag below the limit) | {rate(half, 'fnr')} "
            f"| {rate(val, 'fnr')} | - |",
            f"| FNR, real with S/N > {DETECTION_SNR:g} (detections, like the papers' data) "
            f"| {rate(dhalf, 'fnr')} | {rate(dval, 'fnr')} "
            f"| {100 * braai['fnr']:.1f}% ({braai['source']}) |",
            f"| FPR (bogus called real) | {rate(half, 'fpr')} | {rate(val, 'fpr')} "
            f"| {100 * braai['fpr']:.1f}% ({braai['source']}) |",
            f"| accuracy, detections (real with S/N > {DETECTION_SNR:g}, all bogus) "
            f"| {rate(dhalf, 'accuracy')} | {rate(dval, 'accuracy')} "
            f"| {100 * hits['accuracy']:.2f}% CNN, {100 * hits['random_forest_accuracy']:.2f}% "
            f"random forest ({hits['source']}) |",
            f"| AUROC | {metrics['auroc']:.4f} ({metrics['n_test']} test stamps) | | - |",
            "",
            "skyscan's figures are measured on skyscan's own simulated triplets, not on the "
            "papers' ZTF or HiTS data: compare trends, not decimals. The 95% intervals are "
            "Wilson intervals; the validation threshold is the card's "
            f"({(val or {}).get('target_fpr', 'n/a')} FPR on the validation split).",
            "",
            "How the model carries to real ZTF alerts (its scores beside ZTF's own drb, with "
            "intervals) is in `real_alerts.md` beside this file, written by the rule "
            "check_real_alerts when the config's `transients.real_alerts` names a set of "
            "alerts (`config/transients-ztf.yaml`: the public development set that "
            "`make setup` fetches).",
        ]
        return "\n".join(lines) + "\n"

    def caption(self, row: Mapping[str, Any], score: float) -> str:
        """Kind, magnitude (for real detections) and score."""
        text = f"{row['kind']} p={score:.3f}"
        mag = row.get("mag")
        if mag is not None and np.isfinite(mag):
            text += f"\nm={mag:.1f}"
        return text

    def picture(self, stamp: np.ndarray, bands: Sequence[str]) -> np.ndarray:
        """Science | reference | difference side by side, each with its own grey stretch."""
        panels = [
            _stretch(np.asarray(stamp[k], dtype=np.float64)) for k in range(min(3, len(stamp)))
        ]
        gap = np.full((stamp.shape[-2], 2), 255, dtype=np.uint8)
        row = np.concatenate(
            [p if i == 0 else np.hstack([gap, p]) for i, p in enumerate(panels)], axis=1
        )
        return np.repeat(row[:, :, None], 3, axis=2)

    def preview(self, shards, out, per_kind: int = 4):
        """Triplets of every kind, labelled with kind and magnitude."""
        from skyscan.data.preview import write_preview
        from skyscan.data.shards import read_metadata

        meta = read_metadata(shards[0])
        title = (
            f"skyscan transient triplets ({meta['survey']}: science | reference | difference), "
            f'{meta["shape"][1]}x{meta["shape"][2]} px at {meta["pixel_scale"]}"'
        )
        return write_preview(self, shards, out, per_kind=per_kind, title=title)

    def simulate(self, config: Mapping, out_dir, **options) -> list:
        """Simulate triplets into Parquet shards (:mod:`skyscan.cases.transients.simulate`)."""
        from skyscan.cases.transients.simulate import run_transient_simulation

        return run_transient_simulation(config, out_dir, **options)


CASE = TransientCase()
