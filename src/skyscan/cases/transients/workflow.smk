# The transient case's own rules (included by the Snakefile after the shared stages): write
# demonstration alert packets from fresh simulated detections and score them with the
# exported model, as a broker would.

ALERTS_DIR = f"{RESULTS}/alerts"
ALERTS_FORMAT = config.get(CASE.name, {}).get("alerts", {}).get("format", "avro")
DEMO_ALERTS = f"{ALERTS_DIR}/demo.{ALERTS_FORMAT}"
ALERT_SCORES = f"{ALERTS_DIR}/scores.parquet"
CASE_TARGETS = [ALERT_SCORES]


rule make_alerts:
    """Alert packets (ZTF field names) of detections simulated after the training rows."""
    input:
        config=f"{RESULTS}/configs/alerts.json",
    output:
        alerts=DEMO_ALERTS,
        truth=f"{ALERTS_DIR}/demo_truth.parquet",
    log:
        f"{LOGS}/make_alerts.log",
    params:
        skyscan=SKYSCAN,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "{params.skyscan} make-alerts --config {input.config} --out {output.alerts}"
        " --truth {output.truth} > {log} 2>&1"


rule score_alerts:
    """Score the alert packets with the exported model: candid, score, rb/drb beside it."""
    input:
        alerts=DEMO_ALERTS,
        card=MODEL_CARD,
    output:
        scores=ALERT_SCORES,
        failures=f"{ALERTS_DIR}/scores_failures.json",
    log:
        f"{LOGS}/score_alerts.log",
    params:
        skyscan=SKYSCAN,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "{params.skyscan} score-alerts --model {input.card} {input.alerts}"
        " --out {output.scores} --failures {output.failures} > {log} 2>&1"


# How the model carries to real data: ZTF alerts that carry ZTF's drb (transients.real_alerts;
# the public development set is fetched by `make setup`, never at run time).
REAL_ALERTS = config.get(CASE.name, {}).get("real_alerts")
if REAL_ALERTS and not os.path.isfile(REAL_ALERTS):
    # external data, not an output of this run: say so and run the rest
    print(
        f"warning: transients.real_alerts {REAL_ALERTS} does not exist (make setup fetches "
        "the public development set): the real-alert check is skipped",
        file=sys.stderr,
    )
    REAL_ALERTS = None
if REAL_ALERTS:
    REAL_CHECK_DIR = f"{RESULTS}/evaluation"
    CASE_TARGETS += [f"{REAL_CHECK_DIR}/real_alerts.md"]
    CASE_INDEX_SECTIONS = [
        ("Real ZTF alerts (the model's logit against ZTF's drb)",
         [f"{REAL_CHECK_DIR}/real_alerts.png"]),
    ]
    CASE_PLOT_CAPTIONS = {
        "real_alerts": "real ZTF alerts: the model's logit against ZTF's own deep real/bogus "
        "score, the card's threshold marked (figures with intervals in real_alerts.md)",
    }

    rule check_real_alerts:
        """Score real alerts with the exported model and compare with ZTF's drb."""
        input:
            alerts=REAL_ALERTS,
            card=MODEL_CARD,
        output:
            md=f"{REAL_CHECK_DIR}/real_alerts.md",
            figures=f"{REAL_CHECK_DIR}/real_alerts.json",
            scores=f"{REAL_CHECK_DIR}/real_alerts.parquet",
            failures=f"{REAL_CHECK_DIR}/real_alerts_failures.json",
            plot=report(f"{REAL_CHECK_DIR}/real_alerts.png", category="Evaluation"),
        log:
            f"{LOGS}/check_real_alerts.log",
        params:
            skyscan=SKYSCAN,
            out=REAL_CHECK_DIR,
        threads: 1
        resources:
            mem_mb=2000,
            runtime=30,
        conda:
            CONDA_ENV
        shell:
            "{params.skyscan} check-real-alerts --model {input.card} --alerts {input.alerts}"
            " --out {params.out} > {log} 2>&1"
