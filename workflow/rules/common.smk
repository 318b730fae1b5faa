# Shared set-up: validate the config (the schema fills defaults and names a bad key), the
# paths every rule writes, and how rules call the skyscan command.

import json
import sys
from pathlib import Path

SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)  # the workflow runs from a checkout even before `pip install -e .`

from skyscan.config import ConfigError, validate_config  # noqa: E402

try:
    _validated = validate_config(config)
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None
config.clear()
config.update(_validated)

RESULTS = config["results"]
LOGS = f"{RESULTS}/logs"

# Rules call the CLI from this checkout (also inside a --use-conda environment).
SKYSCAN = f"PYTHONPATH={SRC}${{PYTHONPATH:+:$PYTHONPATH}} python -m skyscan.cli"


def stage_config_text(keys):
    """The config subset one stage depends on, as canonical JSON (a rule param: edits rerun it)."""
    return json.dumps({k: config[k] for k in keys}, sort_keys=True, indent=1)


rule stage_config:
    """Write the validated config subset a stage reads; rewritten only when that subset changes."""
    output:
        f"{RESULTS}/configs/{{stage}}.json",
    params:
        text=lambda wc: stage_config_text(STAGE_KEYS[wc.stage]),
    log:
        f"{LOGS}/stage_config/{{stage}}.log",
    threads: 1
    resources:
        mem_mb=200,
        runtime=5,
    run:
        tmp = Path(output[0]).with_suffix(".tmp")
        tmp.write_text(params.text)
        tmp.replace(output[0])
        Path(log[0]).write_text(f"wrote {output[0]}\n")


STAGE_KEYS = {
    "simulate": ["seed", "survey", "surveys", "bands", "simulate"],
}
