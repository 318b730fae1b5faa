# skyscan: simulate -> datasets -> train -> evaluate -> tiles -> search -> sky maps.
#
#   snakemake --cores 2                          # the embedded default config.yaml
#   snakemake --cores 8 --configfile my.yaml     # your own config (validated, defaults filled)

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("8.0")


# The embedded default config.yaml, unless --configfile names one: a config file is the whole
# config (keys it leaves out take the schema's defaults), never merged into config.yaml, so a
# map such as simulate.kinds that lists two kinds gets exactly those two.
if not workflow.config_settings.configfiles:
    workflow.configfile("config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/configs.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"


# The case's own rules (workflow.smk in the case's folder): what its stages need beyond the
# shared ones (the lens case's survey tiles and sky maps, the transient case's alert packets)
# and what the shared search reads (SEARCH_TABLE, SEARCH_INDEX; see common.smk).
CASE_RULES = CASE.workflow_rules()
if CASE_RULES:

    include: CASE_RULES


include: "workflow/rules/search.smk"
include: "workflow/rules/index.smk"


# Rules that only write a small file (or nothing) run in the Snakemake process itself: under
# the SLURM profile no job is submitted for them.
localrules:
    all,
    stage_config,
    results_index,


# Every case simulates, builds datasets, trains and evaluates; the shared search runs for a
# case with the "search" stage, and the case's own rules add their targets (CASE_TARGETS:
# sky maps, alert scores); a network that estimates parameters (train.target) stops at its
# own evaluation.
FINAL_TARGETS = [SIM_SHARDS, SIM_PREVIEW, MODEL_CARD, f"{EVAL_DIR}/metrics.json"]
if config["train"]["target"] == "parameters":
    # A parameter network (e.g. config/lensparams.yaml) is judged on its own metrics; the
    # search stages need a classifier.
    FINAL_TARGETS = [SIM_SHARDS, SIM_PREVIEW, MODEL_CARD, f"{EVAL_DIR}/param_metrics.json"]
else:
    if "search" in CASE.stages:
        FINAL_TARGETS += [f"{SEARCH_DIR}/candidates.parquet"]
    FINAL_TARGETS += CASE_TARGETS
FINAL_TARGETS += [RESULTS_INDEX]


rule all:
    input:
        FINAL_TARGETS,
    default_target: True
