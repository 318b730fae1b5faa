# Stage 6: the search of the tiles, one Dask task per HEALPix pixel.

SEARCH_DIR = f"{RESULTS}/search"


rule search:
    """Score the catalog positions on the tiles with the exported model (Dask, resumable)."""
    input:
        TILE_FILES,
        card=MODEL_CARD,
        catalog=f"{TILES_DIR}/catalog.parquet",
        summary=f"{TILES_DIR}/tiles.json",
        config=f"{RESULTS}/configs/search.json",
    output:
        candidates=f"{SEARCH_DIR}/candidates.parquet",
        summary=f"{SEARCH_DIR}/summary.json",
        failures=f"{SEARCH_DIR}/failures.json",
        gallery=report(f"{SEARCH_DIR}/gallery.png", category="Search",
                       caption="../report/gallery.rst"),
    log:
        f"{LOGS}/search.log",
    params:
        skyscan=SKYSCAN,
        tiles=lambda wc, input: os.path.dirname(input.summary),
        out=lambda wc, output: os.path.dirname(output.summary),
        # Dask workers = the job's threads (capped by --cores); 0 in the config: no Dask
        workers=lambda wc, threads: threads if config["search"]["workers"] else 0,
    threads: config["search"]["workers"] or 1
    resources:
        mem_mb=4000,
        runtime=240,
    conda:
        "../../envs/skyscan-cpu.yaml"
    shell:
        "{params.skyscan} search --model {input.card} --tiles {params.tiles}"
        " --catalog {input.catalog} --out {params.out} --config {input.config}"
        " --workers {params.workers} > {log} 2>&1"
