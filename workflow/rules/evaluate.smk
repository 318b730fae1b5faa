# Stage 4: metrics on the test split beside the science case's published figures.

EVAL_DIR = f"{RESULTS}/evaluation"
EVAL_PLOTS = list(CASE.evaluation_plots)  # the case's plots and galleries
# a parameter network's plot: predicted against true values of the case's first parameter
_PARAMETERS = case_parameters(CASE)
PARAMETER_PLOT = f"{EVAL_DIR}/{_PARAMETERS[0].name if _PARAMETERS else 'parameters'}.png"


rule evaluate:
    """ROC, TPR at 1% FPR, TPR0/TPR10, completeness in the case's strata, plots, comparison."""
    input:
        DATASET_ARRAYS,
        manifest=DATASET_MANIFEST,
        card=MODEL_CARD,
        config=f"{RESULTS}/configs/evaluate.json",
    output:
        metrics=f"{EVAL_DIR}/metrics.json",
        scores=f"{EVAL_DIR}/scores.parquet",
        comparison=report(f"{EVAL_DIR}/comparison.md", category="Evaluation",
                          caption="../report/comparison.rst"),
        plots=report(
            expand(f"{EVAL_DIR}/{{plot}}.png", plot=EVAL_PLOTS),
            category="Evaluation",
            caption="../report/evaluation.rst",
        ),
    log:
        f"{LOGS}/evaluate.log",
    params:
        skyscan=SKYSCAN,
        dataset=lambda wc, input: os.path.dirname(input.manifest),
        out=lambda wc, output: os.path.dirname(output.metrics),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/skyscan-cpu.yaml"
    shell:
        "{params.skyscan} evaluate --model {input.card} --dataset {params.dataset}"
        " --out {params.out} --config {input.config} > {log} 2>&1"


rule evaluate_params:
    """A parameter network (train.target: parameters): errors, bias, 68% coverage of the test
    positives' parameters and predicted against true values of the first (theta_E)."""
    input:
        DATASET_ARRAYS,
        manifest=DATASET_MANIFEST,
        card=MODEL_CARD,
    output:
        metrics=f"{EVAL_DIR}/param_metrics.json",
        plot=report(
            PARAMETER_PLOT,
            category="Evaluation",
            caption="../report/evaluation.rst",
        ),
    log:
        f"{LOGS}/evaluate_params.log",
    params:
        skyscan=SKYSCAN,
        dataset=lambda wc, input: os.path.dirname(input.manifest),
        out=lambda wc, output: os.path.dirname(output.metrics),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/skyscan-cpu.yaml"
    shell:
        "{params.skyscan} evaluate-params --model {input.card} --dataset {params.dataset}"
        " --out {params.out} > {log} 2>&1"
