# This toy case's own rules: the survey catalogue the shared search scores (each row holds
# its sample, so there is no tile index), drawn like the simulation with its own seed.

SURVEY_ROWS = 300
SEARCH_TABLE = f"{RESULTS}/survey/catalog.parquet"
SEARCH_INDEX = None


rule survey_catalog:
    """A small patch of sky whose rows carry their samples (nested or packed columns)."""
    input:
        config=f"{RESULTS}/configs/simulate.json",
    output:
        SEARCH_TABLE,
    log:
        f"{LOGS}/survey_catalog.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    run:
        import importlib

        survey = importlib.import_module(f"{type(CASE).__module__}.simulate")
        survey.write_survey_catalog(config, output[0], n=SURVEY_ROWS)
