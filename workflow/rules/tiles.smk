# Stage 5: simulated survey tiles with injected lenses, for the search.

TILES_DIR = f"{RESULTS}/tiles"
TILE_NAMES = [
    f"tile-{j:02d}-{i:02d}"
    for j in range(config["tiles"]["grid"][1])
    for i in range(config["tiles"]["grid"][0])
]
TILE_FILES = expand(f"{TILES_DIR}/{{tile}}_{{band}}.fits", tile=TILE_NAMES, band=config["bands"])


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
