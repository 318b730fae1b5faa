# Stage 5: simulated survey tiles with injected lenses, for the search.

TILES_DIR = f"{RESULTS}/tiles"
# The tiles are the case's: what its section gives the tiles stage (the lens case's
# lenses.tiles and lenses.bands); none for a case without them.
_TILE_SETTINGS = CASE.stage_settings(config, "tiles") if CASE.config_schema else {}
TILE_BANDS = list(_TILE_SETTINGS.get("bands", []))
_TILE_GRID = _TILE_SETTINGS.get("tiles", {}).get("grid", [0, 0])
TILE_NAMES = [f"tile-{j:02d}-{i:02d}" for j in range(_TILE_GRID[1]) for i in range(_TILE_GRID[0])]
TILE_FILES = expand(f"{TILES_DIR}/{{tile}}_{{band}}.fits", tile=TILE_NAMES, band=TILE_BANDS)


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
        "../../envs/skyscan-cpu.yaml"
    shell:
        "{params.skyscan} make-tiles --config {input.config} --out {params.out} > {log} 2>&1"
