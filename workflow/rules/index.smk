# The landing page: results/index.html links every plot of the run with a one-line caption,
# the case's own sections first (the lens case's zoomed sky maps: the all-sky Mollweide of a
# small search is nearly empty).

RESULTS_INDEX = f"{RESULTS}/index.html"

#: One line per plot (file stem); galleries take their title from the science case, and a
#: case's own plots their caption from its rules (CASE_PLOT_CAPTIONS).
PLOT_CAPTIONS = {
    "gallery": "highest-scoring search candidates as pictures, with id and probability",
    "roc": "ROC on the test split (logarithmic false-positive axis), operating point marked",
    "completeness": "completeness at the operating false-positive rate per stratum",
    "scores_by_kind": "score distributions of every kind of the test split",
    "reliability": "reliability diagram before and after temperature calibration",
    "preview": "simulated examples, one row per kind",
    **{
        p.name: f"predicted against true {p.description} of the test {CASE.positives}, 1-sigma bars"
        for p in case_parameters(CASE)
    },
    **CASE_PLOT_CAPTIONS,
}
# A parameter network (train.target: parameters) has its own evaluation plot and no search.
PARAMETER_NETWORK = config["train"]["target"] == "parameters"
INDEX_SECTIONS = []
if not PARAMETER_NETWORK:
    INDEX_SECTIONS += CASE_INDEX_SECTIONS
    if "search" in CASE.stages:
        INDEX_SECTIONS += [("Search", [f"{SEARCH_DIR}/gallery.png"])]
INDEX_SECTIONS += [
    (
        "Evaluation on the test split",
        [PARAMETER_PLOT]
        if PARAMETER_NETWORK
        else [f"{EVAL_DIR}/{plot}.png" for plot in EVAL_PLOTS],
    ),
    ("Simulation", [SIM_PREVIEW]),
]
GALLERY_TITLES = {g.stem: g.title for g in CASE.galleries}
INDEX_PAGE = [
    (
        title,
        [
            (plot, GALLERY_TITLES.get(stem) or PLOT_CAPTIONS.get(stem, stem.replace("_", " ")))
            for plot in plots
            for stem in [os.path.splitext(os.path.basename(plot))[0]]
        ],
    )
    for title, plots in INDEX_SECTIONS
]


rule results_index:
    """results/index.html: every plot linked with a one-line caption, zoomed sky maps first."""
    input:
        [plot for _, plots in INDEX_SECTIONS for plot in plots],
    output:
        RESULTS_INDEX,
    log:
        f"{LOGS}/results_index.log",
    threads: 1
    resources:
        mem_mb=200,
        runtime=5,
    run:
        from skyscan.viz import write_results_index

        write_results_index(output[0], INDEX_PAGE, title=f"skyscan results: {CASE.title}")
