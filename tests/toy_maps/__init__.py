"""A toy science case whose sample is two named arrays plus a scalar: a sky map (16 x 32,
equirectangular in RA), a three-detector vector and a network S/N.  Positives ("signal") are
compact maps whose detector vector agrees with the S/N; negatives ("noise") are diffuse maps
with an unrelated vector.

It lives outside skyscan (``SKYSCAN_CASES=maps=toy_maps``) and edits no shared module: it
shows that a case whose sample is several named arrays plus scalars is an addition.
"""

from __future__ import annotations

import numpy as np

from skyscan.core.case import Case, Headline, Strata

PARTS = {"skymap": (16, 32), "detectors": (3,)}
SCALARS = ("network_snr",)


class MapsCase(Case):
    """Compact sky maps of real signals against diffuse noise maps."""

    name = "maps"
    title = "sky maps: signal against noise (a test case of named arrays plus a scalar)"
    positive, positives, negatives = "signal", "signals", "noise maps"
    positive_kinds = ("signal",)
    negative_kinds = ("noise",)
    models = ("mapnet",)
    stages = ("search",)  # its survey catalogue: workflow.smk beside this file

    def samples(self):
        from skyscan.data.samples import ArraySet

        return ArraySet(PARTS, SCALARS, roll=("skymap",))

    def score_columns(self, names):
        return [c for c in names if c in ("index", "kind", "label", "network_snr", "area")]

    def strata(self, meta, spec):
        return Strata(
            row_values=np.asarray(meta["network_snr"], float),
            col_values=np.asarray(meta["area"], float),
            row_bins=[0.0, 10.0, 1e9],
            col_bins=[0.0, 20.0, 1e9],
            row_label="network S/N",
            col_label="90% area (pixels)",
            record={"strata": "network_snr x area"},
        )

    def headline(self, strata, passed):
        sel = strata.row_values > 10
        return Headline(
            "network S/N > 10", int(sel.sum()), float(passed[sel].mean()) if sel.any() else None
        )

    def comparison_table(self, metrics):
        return f"| AUROC | {metrics['auroc']:.3f} ({metrics['n_test']} maps) |\n"

    def simulate(self, config, out_dir, **options):
        from skyscan.data.driver import run_shards
        from toy_maps.simulate import MapsPlan

        return run_shards(
            MapsPlan.from_config(config),
            out_dir,
            shards=options.get("shards"),
            workers=options.get("workers", 1),
            show_progress=options.get("show_progress", False),
        )


CASE = MapsCase()
