# Shared set-up: validate the config (the schema fills defaults and names a bad key), the
# paths every rule writes, and how rules call the skyscan command.

import json
import os
import sys
from pathlib import Path

SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)  # the workflow runs from a checkout even before `pip install -e .`

from skyscan.config import ConfigError, validate_config  # noqa: E402
from skyscan.core.case import get_case  # noqa: E402

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


def stage_config_text(keys):
    """The config subset one stage depends on, as canonical JSON (a param, so edits rerun it)."""
    return json.dumps({k: config[k] for k in keys}, sort_keys=True, indent=1)


# The config keys each stage reads: only edits to these rerun the stage.
STAGE_KEYS = {
    "simulate": ["seed", "case", "survey", "surveys", "bands", "simulate"],
    "dataset": ["seed", "case", "dataset"],
    "train": ["seed", "train"],
    "evaluate": ["evaluate"],
    "tiles": ["seed", "survey", "surveys", "bands", "simulate", "tiles"],
    "search": ["search"],
    "skymaps": ["search", "skymaps"],
}
