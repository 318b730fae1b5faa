# The validated config, split per stage: each stage's jobs depend on the file of the keys they
# read, so editing one stage's settings reruns that stage and what follows, nothing else.


rule stage_config:
    """Write the validated config subset a stage reads; rewritten only when that subset changes."""
    output:
        f"{RESULTS}/configs/{{stage}}.json",
    params:
        text=lambda wc: stage_config_text(wc.stage),
    log:
        f"{LOGS}/stage_config/{{stage}}.log",
    threads: 1
    resources:
        mem_mb=200,
        runtime=5,
    conda:
        "../../envs/skyscan-cpu.yaml"
    shell:
        "printf '%s\\n' {params.text:q} > {output} 2> {log}"
