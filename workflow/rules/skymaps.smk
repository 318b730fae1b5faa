# Stage 7: HEALPix sky maps of the search and injection-recovery on the tiles.

SKYMAP_DIR = f"{RESULTS}/skymaps"
SKYMAP_PNGS = ["footprint", "scored", "candidates", "mean_score", "injection_completeness"]


rule skymaps:
    """Footprint / scored / candidates / mean-score maps; completeness of injected lenses."""
    input:
        TILE_FILES,
        scores=f"{SEARCH_DIR}/scores",
        truth=f"{TILES_DIR}/truth.parquet",
        metrics=f"{EVAL_DIR}/metrics.json",
        card=MODEL_CARD,
        config=f"{RESULTS}/configs/skymaps.json",
        summary=f"{TILES_DIR}/tiles.json",
    output:
        fits=f"{SKYMAP_DIR}/skymaps.fits",
        summary=f"{SKYMAP_DIR}/skymaps.json",
        table=report(f"{SKYMAP_DIR}/injection_recovery.md", category="Sky maps",
                     caption="../report/skymaps.rst"),
        pngs=report(expand(f"{SKYMAP_DIR}/{{name}}.png", name=SKYMAP_PNGS),
                    category="Sky maps", caption="../report/skymaps.rst"),
    log:
        f"{LOGS}/skymaps.log",
    params:
        skyscan=SKYSCAN,
        tiles=lambda wc, input: os.path.dirname(input.summary),
        search=lambda wc, input: os.path.dirname(input.scores),
        out=lambda wc, output: os.path.dirname(output.summary),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/skyscan-cpu.yaml"
    shell:
        "{params.skyscan} skymaps --search {params.search} --tiles {params.tiles}"
        " --model {input.card} --metrics {input.metrics} --truth {input.truth} --out {params.out}"
        " --config {input.config} > {log} 2>&1"
