# The lens case's own rules (included by the Snakefile after the shared stages, before the
# shared search): simulated survey tiles with injected lenses, the tile index the search cuts
# stamps from, and HEALPix sky maps with the injections' recovery.

TILES_DIR = f"{RESULTS}/tiles"
SKYMAP_DIR = f"{RESULTS}/skymaps"
SKYMAP_PNGS = ["footprint", "scored", "candidates", "mean_score", "injection_completeness"]
# The tiles are the case's: what its section gives the tiles stage (lenses.tiles and
# lenses.bands).
_TILE_SETTINGS = CASE.stage_settings(config, "tiles")
TILE_BANDS = list(_TILE_SETTINGS.get("bands", []))
_TILE_GRID = _TILE_SETTINGS.get("tiles", {}).get("grid", [0, 0])
TILE_NAMES = [f"tile-{j:02d}-{i:02d}" for j in range(_TILE_GRID[1]) for i in range(_TILE_GRID[0])]
TILE_FILES = expand(f"{TILES_DIR}/{{tile}}_{{band}}.fits", tile=TILE_NAMES, band=TILE_BANDS)

# The shared search: the tiles' input catalogue, scored on stamps cut through the tile index.
SEARCH_TABLE = f"{TILES_DIR}/catalog.parquet"
SEARCH_INDEX = f"{TILES_DIR}/tile_index"
CASE_TARGETS = [f"{SKYMAP_DIR}/skymaps.json"]
CASE_INDEX_SECTIONS = [
    (
        "Sky maps (zoomed gnomonic view of the searched region, all-sky locator beside it)",
        [f"{SKYMAP_DIR}/{name}.png" for name in
         ("candidates", "mean_score", "scored", "footprint", "injection_completeness")],
    ),
]
CASE_PLOT_CAPTIONS = {
    "candidates": "candidates above the evaluation's 1% false-positive threshold per HEALPix pixel",
    "mean_score": "mean lens probability of the scored cutouts per HEALPix pixel",
    "scored": "cutouts scored per HEALPix pixel",
    "footprint": "the tiles' footprint (HEALPix MOC pixels searched)",
    "injection_completeness": "recovery of the lenses injected into the tiles, by theta_E and S/N",
}


rule make_tiles:
    """FITS tiles (TAN WCS, noise, PSF), truth catalog and input catalog."""
    input:
        config=f"{RESULTS}/configs/tiles.json",
    output:
        TILE_FILES,
        truth=f"{TILES_DIR}/truth.parquet",
        catalog=f"{TILES_DIR}/catalog.parquet",
        summary=f"{TILES_DIR}/tiles.json",
    log:
        f"{LOGS}/make_tiles.log",
    params:
        skyscan=SKYSCAN,
        out=lambda wc, output: os.path.dirname(output.summary),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "{params.skyscan} make-tiles --config {input.config} --out {params.out} > {log} 2>&1"


rule tile_index:
    """Which tiles cover which HEALPix pixel; pixel scale and background noise per tile."""
    input:
        TILE_FILES,
        summary=f"{TILES_DIR}/tiles.json",
        config=f"{RESULTS}/configs/search.json",
    output:
        directory(SEARCH_INDEX),
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
        CONDA_ENV
    shell:
        "{params.skyscan} tiles index {params.tiles} --out {output} --bands {params.bands}"
        " --config {input.config} > {log} 2>&1"


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
                     caption=str(REPORT_CAPTIONS / "skymaps.rst")),
        pngs=report(expand(f"{SKYMAP_DIR}/{{name}}.png", name=SKYMAP_PNGS),
                    category="Sky maps", caption=str(REPORT_CAPTIONS / "skymaps.rst")),
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
        CONDA_ENV
    shell:
        "{params.skyscan} skymaps --search {params.search} --tiles {params.tiles}"
        " --model {input.card} --metrics {input.metrics} --truth {input.truth} --out {params.out}"
        " --config {input.config} > {log} 2>&1"
