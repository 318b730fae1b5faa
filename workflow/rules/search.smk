# Stage 6: the search of the tiles, one Dask task per partition of the HATS catalogue.

SEARCH_DIR = f"{RESULTS}/search"


rule catalog_import:
    """The input catalogue as a HATS catalogue (adaptive HEALPix partitions, one task each)."""
    input:
        catalog=f"{TILES_DIR}/catalog.parquet",
        config=f"{RESULTS}/configs/search.json",
    output:
        directory(f"{TILES_DIR}/catalog_hats"),
    log:
        f"{LOGS}/catalog_import.log",
    params:
        skyscan=SKYSCAN,
        rows=config["search"]["partition_rows"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/skyscan-cpu.yaml"
    shell:
        "{params.skyscan} catalog import {input.catalog} --out {output}"
        " --partition-rows {params.rows} --overwrite > {log} 2>&1"


rule tile_index:
    """Which tiles cover which HEALPix pixel; pixel scale and background noise per tile."""
    input:
        TILE_FILES,
        summary=f"{TILES_DIR}/tiles.json",
        config=f"{RESULTS}/configs/search.json",
    output:
        directory(f"{TILES_DIR}/tile_index"),
    log:
        f"{LOGS}/tile_index.log",
    params:
        skyscan=SKYSCAN,
        tiles=lambda wc, input: os.path.dirname(input.summary),
        bands=",".join(TILE_BANDS),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/skyscan-cpu.yaml"
    shell:
        "{params.skyscan} tiles index {params.tiles} --out {output} --bands {params.bands}"
        " --config {input.config} > {log} 2>&1"


rule search:
    """Score the catalogue on the tiles with the exported model (Dask, resumable)."""
    input:
        card=MODEL_CARD,
        catalog=f"{TILES_DIR}/catalog_hats",
        index=f"{TILES_DIR}/tile_index",
        config=f"{RESULTS}/configs/search.json",
    output:
        scores=directory(f"{SEARCH_DIR}/scores"),
        candidates=f"{SEARCH_DIR}/candidates.parquet",
        summary=f"{SEARCH_DIR}/summary.json",
        failures=f"{SEARCH_DIR}/failures.json",
        gallery=report(f"{SEARCH_DIR}/gallery.png", category="Search",
                       caption="../report/gallery.rst"),
    log:
        f"{LOGS}/search.log",
    params:
        skyscan=SKYSCAN,
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
        "{params.skyscan} search --model {input.card} --index {input.index}"
        " --catalog {input.catalog} --out {params.out} --config {input.config}"
        " --workers {params.workers} > {log} 2>&1"
