# Shared set-up: validate the config (the schema fills defaults and names a bad key), the
# paths every rule writes, and how rules call the skyscan command.

import json
import os
import sys
from pathlib import Path

SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)  # the workflow runs from a checkout even before `pip install -e .`

from skyscan.config import ConfigError, stage_config, validate_config  # noqa: E402
from skyscan.core.case import case_parameters, get_case  # noqa: E402

try:
    _validated = validate_config(config)
    # The science case: what the evaluation plots and galleries are (skyscan.cases.<name>).
    CASE = get_case(_validated["case"])
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None
config.clear()
config.update(_validated)

RESULTS = config["results"]
LOGS = f"{RESULTS}/logs"
SEARCH_DIR = f"{RESULTS}/search"

# Absolute, so that a case's own rules (CASE.workflow_rules(), in the case's folder) name
# the same environment and report captions as the shared ones.
CONDA_ENV = str(Path(workflow.basedir) / "envs" / "skyscan-cpu.yaml")
REPORT_CAPTIONS = Path(workflow.basedir) / "workflow" / "report"

# What a case's own rules file sets (the Snakefile includes it before the shared search):
#   SEARCH_TABLE   the catalogue table (Parquet) the shared search imports as HATS;
#   SEARCH_INDEX   a tile index whose pixels the search cuts stamps from, or None when the
#                  samples are the catalogue's own rows (light curves, packed arrays);
#   CASE_TARGETS   the case's final outputs besides the shared stages' (sky maps, alert scores);
#   CASE_INDEX_SECTIONS, CASE_PLOT_CAPTIONS   its plots on results/index.html.
SEARCH_TABLE = None
SEARCH_INDEX = None
CASE_TARGETS = []
CASE_INDEX_SECTIONS = []
CASE_PLOT_CAPTIONS = {}


# Which config made the results folder: a run into a folder made by a different config warns
# first (its changed stages will be rerun and overwrite what is there).
from skyscan.config import config_hash  # noqa: E402
from skyscan.core.atomic import write_json_atomic  # noqa: E402

RESULTS_STAMP = Path(RESULTS) / ".skyscan-config.json"
CONFIG_ID = {
    "config_hash": config_hash(config),
    "configfiles": [str(f) for f in getattr(workflow, "configfiles", [])],
}


def _warn_if_other_config():
    try:
        previous = json.loads(RESULTS_STAMP.read_text())
    except (OSError, ValueError):
        return
    if previous.get("config_hash") != CONFIG_ID["config_hash"]:
        made_by = ", ".join(previous.get("configfiles") or []) or "another config"
        print(
            f"warning: {RESULTS}/ was written by a different config ({made_by}); the stages "
            "whose settings differ will be rerun and overwrite their outputs there. Set "
            "`results:` to another folder to keep both.",
            file=sys.stderr,
        )


_warn_if_other_config()


onstart:
    write_json_atomic(RESULTS_STAMP, CONFIG_ID)

def _uses_conda():
    try:
        from snakemake.settings.types import DeploymentMethod

        return DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    except (ImportError, AttributeError):
        return False


# Rules call the CLI from this checkout: with the Python running Snakemake (the project's
# environment, whatever PATH says), or the rule's own environment under --use-conda.
PYTHON = "python" if _uses_conda() else sys.executable
SKYSCAN = f"PYTHONPATH={SRC}${{PYTHONPATH:+:$PYTHONPATH}} {PYTHON} -m skyscan.cli"


def stage_config_text(stage):
    """The config subset one stage depends on, as canonical JSON (a param, so edits rerun it):
    its shared keys and the part of the case's own section it reads (skyscan.config)."""
    return json.dumps(stage_config(config, stage, CASE), sort_keys=True, indent=1)
