# Stage 1: simulate lenses and non-lenses into Parquet shards, and a preview picture.

import math

N_SIM_SHARDS = math.ceil(config["simulate"]["n"] / config["simulate"]["shard_size"])
SIM_SHARDS = expand(f"{RESULTS}/sims/shard-{{shard:05d}}.parquet", shard=range(N_SIM_SHARDS))
SIM_PREVIEW = f"{RESULTS}/sims/preview.png"


rule simulate:
    """Render one shard of systems (rows shard*shard_size ... ) with the batched simulator."""
    input:
        config=f"{RESULTS}/configs/simulate.json",
    output:
        f"{RESULTS}/sims/shard-{{shard}}.parquet",
    log:
        f"{LOGS}/simulate/shard-{{shard}}.log",
    wildcard_constraints:
        shard=r"\d{5}",
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60,
    params:
        skyscan=SKYSCAN,
    conda:
        "../../envs/skyscan-cpu.yaml"
    shell:
        "{params.skyscan} simulate --config {input.config} --shard $((10#{wildcards.shard}))"
        " --out $(dirname {output}) > {log} 2>&1"


rule simulation_preview:
    """Example systems of every kind as colour composites."""
    input:
        shards=SIM_SHARDS,
        config=f"{RESULTS}/configs/simulate.json",
    output:
        report(
            SIM_PREVIEW,
            caption="../report/preview.rst",
            category="Simulation",
        ),
    log:
        f"{LOGS}/simulation_preview.log",
    params:
        skyscan=SKYSCAN,
        per_kind=config["simulate"]["preview"]["per_kind"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/skyscan-cpu.yaml"
    shell:
        "{params.skyscan} preview {input.shards} --config {input.config} --out {output}"
        " --per-kind {params.per_kind} > {log} 2>&1"
