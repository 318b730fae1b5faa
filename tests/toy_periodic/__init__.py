"""A toy science case whose samples are irregular, variable-length 1-D sequences: a periodic
signal (positive) against red noise (negative), observed at irregular times with errors.

It lives outside skyscan (``SKYSCAN_CASES=periodic=toy_periodic``) and edits no shared
module: it exists to show that a case whose samples are not image stamps is an addition to
the shared stages (simulate, dataset, train, evaluate, search).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from skyscan.core.case import Case, Gallery, Headline, Strata, Worst

FEATURES = ("time", "value", "error", "mask")


class PeriodicCase(Case):
    """Periodic variables against red noise in irregular light curves."""

    name = "periodic"
    title = "periodic signals against red noise (a test case of sequences)"
    positive, positives, negatives = "periodic", "periodic curves", "red-noise curves"
    positive_kinds = ("periodic",)
    negative_kinds = ("red_noise",)
    models = ("seqconv",)
    stages = ("search",)  # its survey catalogue: workflow.smk beside this file
    galleries = (
        Gallery("false_positives", Worst.TOP_NEGATIVES, "highest-scoring red noise"),
        Gallery("missed_periodic", Worst.BOTTOM_POSITIVES, "lowest-scoring periodic curves"),
    )
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "properties": {
            "length": {"type": "integer", "minimum": 8, "default": 64},
            "min_points": {"type": "integer", "minimum": 4, "default": 24},
            "baseline_days": {"type": "number", "exclusiveMinimum": 0, "default": 100.0},
        },
    }

    def samples(self):
        from skyscan.data.samples import Sequences

        return Sequences(FEATURES, length=self._length, time_shift=50.0)

    _length = 64  # the description's padded length (the config's periodic.length)

    def score_columns(self, names):
        keep = ("index", "kind", "label", "amplitude_snr", "period")
        return [c for c in names if c in keep]

    def strata(self, meta: Mapping, spec: Mapping) -> Strata:
        return Strata(
            row_values=np.asarray(meta["period"], float),
            col_values=np.asarray(meta["amplitude_snr"], float),
            row_bins=[0.5, 2.0, 10.0],
            col_bins=[0.0, 3.0, 1e9],
            row_label="period (days)",
            col_label="amplitude / error",
            record={"strata": "period x amplitude_snr"},
        )

    def headline(self, strata: Strata, passed: np.ndarray) -> Headline:
        sel = strata.col_values > 3
        return Headline(
            "amplitude / error > 3",
            int(sel.sum()),
            float(passed[sel].mean()) if sel.any() else None,
        )

    def comparison_table(self, metrics: Mapping) -> str:
        head = metrics["headline"]
        return (
            "| metric | toy | published |\n|---|---|---|\n"
            f"| AUROC | {metrics['auroc']:.3f} ({metrics['n_test']} curves) | - |\n"
            f"| completeness, {head['selection']} | {head['completeness']} ({head['n']}) | - |\n"
        )

    def caption(self, row, score):
        return f"{row['kind']} p={score:.2f}"

    def simulate(self, config, out_dir, **options):
        from skyscan.data.driver import run_shards
        from toy_periodic.simulate import PeriodicPlan

        plan = PeriodicPlan.from_config(config)
        return run_shards(
            plan,
            out_dir,
            shards=options.get("shards"),
            workers=options.get("workers", 1),
            show_progress=options.get("show_progress", False),
        )


CASE = PeriodicCase()
