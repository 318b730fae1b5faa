# Stage 6 (cases with the "search" stage): the search of the case's survey catalogue, one Dask
# task per partition of its HATS catalogue.  The case's own rules say what is searched:
# SEARCH_TABLE, the catalogue table, and SEARCH_INDEX, the tile index stamps are cut through
# (the lens case's survey tiles), or None when each catalogue row holds its own sample.

if "search" in CASE.stages and SEARCH_TABLE is None:
    raise WorkflowError(
        f"case {CASE.name!r} has the search stage but its rules ({CASE.workflow_rules()}) set "
        "no SEARCH_TABLE (the catalogue table to search)"
    )
SEARCH_HATS = f"{RESULTS}/search_catalog/catalog_hats" if SEARCH_TABLE else None
if SEARCH_TABLE and SEARCH_INDEX:
    # beside the tiles, where earlier runs of the lens case kept it
    SEARCH_HATS = f"{os.path.dirname(SEARCH_TABLE)}/catalog_hats"


rule catalog_import:
    """The input catalogue as a HATS catalogue (adaptive HEALPix partitions, one task each)."""
    input:
        catalog=SEARCH_TABLE or [],
        config=f"{RESULTS}/configs/search.json",
    output:
        directory(SEARCH_HATS or f"{RESULTS}/search_catalog/catalog_hats"),
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
        CONDA_ENV
    shell:
        "{params.skyscan} catalog import {input.catalog} --out {output}"
        " --partition-rows {params.rows} --overwrite > {log} 2>&1"


rule search:
    """Score the catalogue with the exported model (Dask, resumable): stamps cut from the
    tiles through the index, or the samples the catalogue's rows hold."""
    input:
        card=MODEL_CARD,
        catalog=SEARCH_HATS or [],
        index=SEARCH_INDEX or [],
        config=f"{RESULTS}/configs/search.json",
    output:
        scores=directory(f"{SEARCH_DIR}/scores"),
        candidates=f"{SEARCH_DIR}/candidates.parquet",
        summary=f"{SEARCH_DIR}/summary.json",
        failures=f"{SEARCH_DIR}/failures.json",
        gallery=report(f"{SEARCH_DIR}/gallery.png", category="Search",
                       caption=str(REPORT_CAPTIONS / "gallery.rst")),
    log:
        f"{LOGS}/search.log",
    params:
        skyscan=SKYSCAN,
        out=lambda wc, output: os.path.dirname(output.summary),
        index=f"--index {SEARCH_INDEX}" if SEARCH_INDEX else "",
        # Dask workers = the job's threads (capped by --cores); 0 in the config: no Dask
        workers=lambda wc, threads: threads if config["search"]["workers"] else 0,
    threads: config["search"]["workers"] or 1
    resources:
        mem_mb=4000,
        runtime=240,
    conda:
        CONDA_ENV
    shell:
        "{params.skyscan} search --model {input.card} {params.index}"
        " --catalog {input.catalog} --out {params.out} --config {input.config}"
        " --workers {params.workers} > {log} 2>&1"
