# Stage 2: train / val / test sets from the simulation shards.

DATASET = f"{RESULTS}/datasets"
DATASET_MANIFEST = f"{DATASET}/manifest.json"
DATASET_ARRAYS = [f"{DATASET}/preprocessing.json"] + [
    f"{DATASET}/{split}/{name}"
    for split in ("train", "val", "test")
    for name in ("images.npy", "meta.parquet")
]


rule build_dataset:
    """Split, balance, check and preprocess the simulated cutouts."""
    input:
        shards=SIM_SHARDS,
        config=f"{RESULTS}/configs/dataset.json",
    output:
        DATASET_ARRAYS,
        manifest=DATASET_MANIFEST,
    log:
        f"{LOGS}/build_dataset.log",
    params:
        skyscan=SKYSCAN,
        out=lambda wc, output: os.path.dirname(output.manifest),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/skyscan-cpu.yaml"
    shell:
        "{params.skyscan} dataset {input.shards} --config {input.config} --out {params.out}"
        " > {log} 2>&1"
