"""The grading page (`skyscan grade`): order, grades in SQLite, exports, hidden simulations,
grader statistics, training examples from the consensus, and a real browser."""

from __future__ import annotations

import json
import re
import shutil
import socket
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from astropy.io import fits
from astropy.wcs import WCS
from starlette import testclient as starlette_testclient

from skyscan.data.preprocess import make_spec, preprocess
from skyscan.data.shards import read_images
from skyscan.models import get_model
from skyscan.models.card import ModelCard
from skyscan.search.run import FLAG_EDGE, cutouts
from skyscan.train.export import export_model
from skyscan.vet.exports import export_grades, export_training_stamps
from skyscan.vet.session import GradingSession, resolve_sources
from skyscan.vet.store import GradeStore, consensus, consensus_class, grader_stats

BANDS = ["g", "r", "i"]
SIZE = 45
TRAIN_SIGMA = [0.5, 0.8, 1.2]  # background sigma of the training images (e-/s)
TILE_SIGMA = [2.0, 3.0, 4.0]  # background sigma of the tiles, in their own units
N_CAND = 50


def _wcs(ra0: float) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, -30.0]
    w.wcs.crpix = [64.5, 64.5]
    w.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    return w


def make_results(root: Path, n: int = N_CAND, seed: int = 1) -> Path:
    """A search output: two 128x128 gri tiles, a model card with an exported model, and
    ``n`` candidates (some at a tile edge, one known lens with a theta_E)."""
    rng = np.random.default_rng(seed)
    tiles = root / "tiles"
    tiles.mkdir(parents=True)
    yy, xx = np.mgrid[:128, :128]
    rows = {k: [] for k in ("id", "ra", "dec", "tile", "x", "y", "cutout_flags")}
    for t, name in enumerate(["t0", "t1"]):
        w = _wcs(150.0 + 0.01 * t)
        xs = rng.uniform(0, 127, n // 2)
        ys = rng.uniform(0, 127, n // 2)
        xs[:3] = [1.0, 126.0, 60.0]  # two at the edge
        planes = []
        for b, sigma in enumerate(TILE_SIGMA):
            image = rng.normal(0, sigma, (128, 128))
            for x, y in zip(xs, ys, strict=True):
                image += 20 * sigma * (b + 1) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8)
            planes.append(image)
            fits.PrimaryHDU(image.astype(np.float32), header=w.to_header()).writeto(
                tiles / f"{name}_{BANDS[b]}.fits"
            )
        ra, dec = w.all_pix2world(xs, ys, 0)
        _, flags = cutouts(np.stack(planes), xs, ys, SIZE)
        rows["id"] += list(range(1000 * t, 1000 * t + n // 2))
        rows["ra"] += list(ra)
        rows["dec"] += list(dec)
        rows["tile"] += [name] * (n // 2)
        rows["x"] += list(xs)
        rows["y"] += list(ys)
        rows["cutout_flags"] += list(flags)
    logit = rng.normal(0, 2, len(rows["id"]))
    table = pa.table(
        {
            **{k: v for k, v in rows.items() if k != "cutout_flags"},
            "logit": logit,
            "score": 1 / (1 + np.exp(-logit)),
            "cutout_flags": pa.array(rows["cutout_flags"], pa.int32()),
            "theta_e": [1.23] + [None] * (len(logit) - 1),
            "theta_e_lo": [1.01] + [None] * (len(logit) - 1),
            "theta_e_hi": [1.52] + [None] * (len(logit) - 1),
            "known_name": ["SL2S J1000-3000"] + [None] * (len(logit) - 1),
        }
    )
    results = root / "results"
    results.mkdir()
    pq.write_table(table, results / "candidates.parquet")
    torch.manual_seed(0)
    spec = make_spec(BANDS, TRAIN_SIGMA, 250, [3, SIZE, SIZE], stretch="asinh")
    card = ModelCard(
        name="test",
        model="fast",
        case="lenses",
        bands=BANDS,
        input_shape=[3, SIZE, SIZE],
        pixel_scale=0.2,
        preprocessing=spec,
    )
    export_model(
        get_model("fast", in_channels=3), torch.randn(4, 3, SIZE, SIZE), root / "model", card
    )
    summary = {"tiles": str(tiles), "pattern": "{tile}_{band}.fits", "hdu": None}
    summary["card"] = str(root / "model" / "model_card.json")
    (results / "summary.json").write_text(json.dumps(summary))
    return results


def make_sims(root: Path, n: int = 60, seed: int = 2) -> Path:
    """A dataset folder's test split (the dataset stage's layout): half lenses."""
    rng = np.random.default_rng(seed)
    spec = make_spec(BANDS, TRAIN_SIGMA, 250, [3, SIZE, SIZE], stretch="asinh")
    raw = rng.normal(0, 1, (n, 3, SIZE, SIZE)) * np.array(TRAIN_SIGMA)[None, :, None, None]
    label = np.arange(n) % 2
    out = root / "dataset"
    (out / "test").mkdir(parents=True)
    np.save(out / "test" / "images.npy", preprocess(raw.astype(np.float32), spec))
    kinds = ["lens" if v else "no_source" for v in label]
    pq.write_table(
        pa.table({"index": np.arange(n), "label": label.astype(np.int8), "kind": kinds}),
        out / "test" / "meta.parquet",
    )
    (out / "preprocessing.json").write_text(json.dumps(spec))
    (out / "manifest.json").write_text(json.dumps({"splits": {"test": {"n": n}}}))
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("grade")
    return make_results(root), make_sims(root)


@pytest.fixture
def results(built, tmp_path):
    """A fresh copy of the results folder (its own database and exports)."""
    out = tmp_path / "results"
    shutil.copytree(built[0], out)
    return out


def _session(results, sims=None, **kwargs):
    store = GradeStore(results / "grades.sqlite")
    return GradingSession(resolve_sources(results), store, sims=sims, **kwargs)


def _client(session, **kwargs):
    from skyscan.vet.app import make_app

    return starlette_testclient.TestClient(make_app(session, **kwargs))


def _login(client, name):
    r = client.post("/login", data={"grader": name}, follow_redirects=False)
    assert r.status_code == 303
    return client


def _keys(html: str) -> list[str]:
    return re.findall(r'data-item="([0-9a-f]{16})"', html)


def test_page_lists_candidates_by_score_with_their_facts(results):
    session = _session(results)
    client = _client(session, per_page=20)
    assert client.get("/", follow_redirects=False).status_code == 303  # name first
    _login(client, "ada")
    first, second, last = (client.get(f"/?page={p}").text for p in (1, 2, 3))
    keys = _keys(first) + _keys(second) + _keys(last)
    assert len(keys) == N_CAND == len(set(keys))
    scores = [session.by_key[k].score for k in keys]
    assert scores == sorted(scores, reverse=True)
    table = pq.read_table(results / "candidates.parquet").to_pydict()
    top = int(np.argmax(table["score"]))
    assert f"{table['ra'][top]:.6f}" in first and f"{table['score'][top]:.4f}" in first
    # the logit beside the score: candidates whose scores all read 1.0000 are told apart
    assert f"<dt>logit</dt><dd>{table['logit'][top]:.2f}</dd>" in first
    assert (first + second + last).count("<dt>logit</dt>") == N_CAND
    html = first + second + last
    assert "known lens: SL2S J1000-3000" in html and "[1.01, 1.52]" in html
    assert html.count("tile edge") == sum(bool(f & FLAG_EDGE) for f in table["cutout_flags"]) >= 2
    assert '<script src="/static/htmx.min.js">' in first
    assert client.get("/static/htmx.min.js").status_code == 200
    # the stamp strip: colour + 3 asinh + 3 zscale panels of 45 px at 3x and the model's
    # saliency, cached on disk
    from PIL import Image

    r = client.get(f"/stamp/{keys[0]}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    image = Image.open(__import__("io").BytesIO(r.content))
    assert image.size == (8 * 135 + 7 * 4, 135)
    assert np.asarray(image).std() > 10  # not blank
    saliency = np.asarray(image.convert("RGB"), dtype=int)[:, 7 * (135 + 4) :]
    assert (np.abs(saliency[..., 0] - saliency[..., 2]) > 40).mean() > 0.01  # red or blue
    assert "saliency (integrated gradients" in first
    assert (results / "grade_cache" / f"{keys[0]}.v2.png").read_bytes() == r.content
    assert client.get("/stamp/0123456789abcdef.png").status_code == 404


def test_stamps_are_the_tile_cutouts_in_sigma_units(results):
    session = _session(results)
    item = next(it for it in session.items if not it.edge)
    stamp = session.stamp(item)
    from astropy.io import fits as f

    planes = np.stack([f.getdata(session.sources.tiles / f"{item.tile}_{b}.fits") for b in BANDS])
    expected, _ = cutouts(planes, [item.x], [item.y], SIZE)
    ratio = expected[0] / stamp
    # divided by the tile's noise (measured on the tile; within 10% of the true sigma)
    np.testing.assert_allclose(np.median(ratio, axis=(1, 2)), TILE_SIGMA, rtol=0.1)


def test_grades_regrade_and_exports(results):
    session = _session(results)
    client = _login(_client(session), "ada")
    keys = _keys(client.get("/").text)
    r = client.post("/grade", data={"item": keys[0], "grade": "2"})
    assert r.status_code == 200 and 'class="chosen"' in r.text and "1 of 50" in r.text
    client.post("/grade", data={"item": keys[0], "grade": "3"})  # re-grade replaces
    client.post("/grade", data={"item": keys[1], "grade": "0"})
    assert session.store.grades_of("ada") == {keys[0]: 3, keys[1]: 0}
    page = client.get("/").text
    assert page.count('class="chosen"') == 2
    grades = pq.read_table(results / "grades.parquet").to_pylist()
    assert sorted((g["grader"], g["grade"]) for g in grades) == [("ada", 0), ("ada", 3)]
    ids = {session.by_key[k].row for k in keys[:2]}
    table = pq.read_table(results / "candidates.parquet")
    assert {g["id"] for g in grades} == {table.column("id")[r].as_py() for r in ids}
    assert not any(g["simulated"] for g in grades)
    assert client.post("/grade", data={"item": keys[0], "grade": "7"}).status_code == 400
    assert client.post("/grade", data={"item": "nope", "grade": "1"}).status_code == 404
    anonymous = _client(session)
    assert anonymous.post("/grade", data={"item": keys[0], "grade": "1"}).status_code == 401


def test_concurrent_graders_in_wal_mode(results):
    session = _session(results)
    assert session.store.journal_mode() == "wal"
    keys = [it.key for it in session.items]
    errors = []

    def grade(name):
        try:
            store = GradeStore(results / "grades.sqlite")  # its own connections
            for k, key in enumerate(keys):
                store.set_grade(name, key, k % 4)
                store.set_grade(name, key, (k + 1) % 4)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=grade, args=(n,)) for n in ("ada", "bo", "cy")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with sqlite3.connect(results / "grades.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT COUNT(*) FROM grades").fetchone()[0] == 3 * len(keys)
    for name in ("ada", "bo", "cy"):
        assert session.store.grades_of(name) == {k: (i + 1) % 4 for i, k in enumerate(keys)}


def test_consensus_classes_and_export(results):
    assert [consensus_class(m) for m in (3.0, 2.51, 2.5, 1.5, 1.49, 0.0)] == list("AABBCC")
    session = _session(results)
    keys = [it.key for it in session.items]
    plan = {keys[0]: [3, 3, 2], keys[1]: [2, 2, 1, 1], keys[2]: [0, 1, 0], keys[3]: [3, 3]}
    for key, values in plan.items():
        for g, value in enumerate(values):
            session.store.set_grade(f"grader{g}", key, value)
    export_grades(session.store, session.sources.candidates, results)
    agreed = pq.read_table(results / "consensus.parquet").to_pylist()
    ids = {session.sources.candidates.column("id")[session.by_key[k].row].as_py(): k for k in keys}
    got = {ids[r["id"]]: (r["mean_grade"], r["n_graders"], r["class"]) for r in agreed}
    assert got == {
        keys[0]: (pytest.approx(8 / 3), 3, "A"),
        keys[1]: (1.5, 4, "B"),
        keys[2]: (pytest.approx(1 / 3), 3, "C"),
    }  # keys[3] has only 2 graders
    assert len(pq.read_table(results / "grades.parquet")) == 12


def _sim_keys(session):
    return {it.key for it in session.items if it.simulated}


def test_simulations_mixed_in_unannounced_and_reproducible(results, built):
    sims = built[1]
    session = _session(results, sims=sims, mix=0.1, seed=4)
    n_sim = len(_sim_keys(session))
    assert n_sim == round(0.1 * N_CAND / 0.9) == 6
    lenses = sum(it.label for it in session.items if it.simulated)
    assert lenses == 3
    # the same seed draws the same stamps (also with a new database); another seed others
    again = GradingSession(
        resolve_sources(results), GradeStore(results / "other.sqlite"), sims=sims, mix=0.1, seed=4
    )
    rows = sorted(it.row for it in session.items if it.simulated)
    assert rows == sorted(it.row for it in again.items if it.simulated)
    other = _session(results, sims=sims, mix=0.1, seed=5)
    assert rows != sorted(it.row for it in other.items if it.simulated)
    # shown like any candidate: nothing in the HTML tells them apart
    client = _login(_client(session, per_page=100), "ada")
    html = client.get("/").text
    for word in ("simul", "sim_", "label", "test split", "synthetic", "injected", "dataset"):
        assert word not in html.lower()
    cards = re.findall(r'<article class="card".*?</article>', html, re.S)
    assert len(cards) == N_CAND + n_sim

    def shape(card):  # the card with its values taken out
        card = re.sub(r"[0-9a-f]{16}", "KEY", card)
        return re.sub(r"[-+]?\d+(\.\d+)?|t[01]", "#", card)

    sim_shapes = {shape(c) for c in cards if _keys(c)[0] in _sim_keys(session)}
    real_shapes = {shape(c) for c in cards if _keys(c)[0] not in _sim_keys(session)}
    assert sim_shapes <= real_shapes
    # simulated positions lie inside the tiles, on the sky where the tiles are
    for it in session.items:
        if it.simulated:
            assert 22 <= it.x <= 127 - 22 and 22 <= it.y <= 127 - 22 and it.flags == 0
            assert 0 <= it.score <= 1
    # their stamps render like the others
    key = next(iter(_sim_keys(session)))
    assert client.get(f"/stamp/{key}.png").status_code == 200


def test_grader_statistics_on_the_hidden_simulations(results, built):
    session = _session(results, sims=built[1], mix=0.1, seed=4)
    client = _login(_client(session), "ada")
    sims = [it for it in session.items if it.simulated]
    lenses = [it for it in sims if it.label == 1]
    others = [it for it in sims if it.label == 0]
    # ada finds 2 of 3 lenses and calls one non-lens probable
    for it, grade in zip(lenses, [3, 2, 1], strict=True):
        client.post("/grade", data={"item": it.key, "grade": str(grade)})
    for it, grade in zip(others, [2, 0, 0], strict=True):
        client.post("/grade", data={"item": it.key, "grade": str(grade)})
    client.post(
        "/grade", data={"item": next(i for i in session.items if not i.simulated).key, "grade": "3"}
    )
    stats = json.loads((results / "grader_stats.json").read_text())["graders"]["ada"]
    assert stats["simulated_graded"] == 6
    assert (stats["completeness"]["k"], stats["completeness"]["n"]) == (2, 3)
    assert (stats["purity"]["k"], stats["purity"]["n"]) == (2, 3)
    low, high = stats["completeness"]["ci95"]
    assert low < 2 / 3 < high and high < 1  # Wilson interval of 2/3
    page = client.get("/stats").text
    assert "ada" in page and "2 / 3" in page and "0.67" in page
    # the consensus and the grades export keep the simulations apart
    rows = pq.read_table(results / "grades.parquet").to_pylist()
    assert sum(r["simulated"] for r in rows) == 6 and all(
        r["sim_label"] is None for r in rows if not r["simulated"]
    )
    assert grader_stats([])["graders"] == {}
    assert consensus([{"item": "a", "simulated": 1, "ref": "3", "grade": 3}] * 3) == []


def test_training_examples_from_the_consensus(results, tmp_path):
    """Consensus >= 2.5 becomes a lens, <= 0.5 a hard negative; stamps in training units;
    the dataset stage adds them to the training split only and counts them."""
    session = _session(results)
    clean = [it for it in session.items if it.flags == 0]
    plan = [(clean[0], [3, 3, 2]), (clean[1], [3, 3, 3]), (clean[2], [0, 1, 0])]
    plan.append((clean[3], [2, 2, 2]))
    for it, values in plan:
        for g, value in enumerate(values):
            session.store.set_grade(f"g{g}", it.key, value)
    edge = next(it for it in session.items if it.edge)
    for g in range(3):
        session.store.set_grade(f"g{g}", edge.key, 3)
    counts = export_training_stamps(session)
    assert counts == {"positives": 2, "negatives": 1, "skipped_flagged": 1}
    images, table, meta = read_images(results / "graded_stamps.parquet")
    assert meta["bands"] == BANDS and meta["shape"] == [3, SIZE, SIZE]
    ids = session.sources.candidates.column("id").to_pylist()
    by_id = dict(zip(table.column("id").to_pylist(), range(len(table)), strict=True))
    for it, label in ((clean[1], 1), (clean[2], 0)):
        k = by_id[ids[it.row]]
        assert table.column("label")[k].as_py() == label
        expected = session.stamp(it) * np.array(TRAIN_SIGMA, dtype=np.float32)[:, None, None]
        np.testing.assert_allclose(images[k], expected, rtol=1e-5)
    assert ids[clean[3].row] not in by_id  # mean 2: unused

    from skyscan.cases.lenses.sim.simulate import SimulationPlan, run_simulation
    from skyscan.config import load_config
    from skyscan.data.datasets import DatasetError, build_dataset, load_split

    config = load_config(
        None,
        {
            "seed": 3,
            "simulate": {"n": 120, "shard_size": 120},
            "dataset": {"graded_examples": str(results / "graded_stamps.parquet")},
        },
    )
    shards = run_simulation(
        SimulationPlan.from_config(config), tmp_path / "sims", show_progress=False
    )
    plain = load_config(None, {"seed": 3, "simulate": {"n": 120, "shard_size": 120}})
    reference = build_dataset(shards, tmp_path / "plain", plain)
    manifest = build_dataset(shards, tmp_path / "fed", config)
    assert manifest["graded_examples"]["n"] == 3
    assert manifest["graded_examples"]["positives"] == 2
    assert manifest["splits"]["train"]["n"] == reference["splits"]["train"]["n"] + 3
    for split in ("val", "test"):
        assert manifest["splits"][split] == reference["splits"][split]
    train, meta_t, spec = load_split(tmp_path / "fed", "train")
    kinds = meta_t.column("kind").to_pylist()
    assert kinds[-3:].count("graded_lens") == 2 and kinds[-3:].count("graded_negative") == 1
    np.testing.assert_allclose(train[-3:], preprocess(images, spec), rtol=1e-6)
    base, _, _ = load_split(tmp_path / "plain", "train")
    np.testing.assert_array_equal(train[:-3], base)
    # stamps of other bands are refused, naming the file
    bad = tmp_path / "bad.parquet"
    from skyscan.data.shards import write_table_atomic

    tab = pq.read_table(results / "graded_stamps.parquet")
    meta2 = {k: v for k, v in meta.items()}
    meta2["bands"] = ["g", "r", "z"]
    write_table_atomic(tab.replace_schema_metadata(None), bad, meta2)
    config["dataset"]["graded_examples"] = str(bad)
    with pytest.raises(DatasetError, match="bad.parquet"):
        build_dataset(shards, tmp_path / "bad", config)


def test_command_line_export_and_errors(results, built, capsys):
    from skyscan.cli import main

    session = _session(results)
    for g in range(3):
        session.store.set_grade(f"g{g}", session.items[0].key, 3)
    assert main(["grade", str(results), "--export", "--sims", str(built[1])]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["consensus"] == 1 and out["graders"] == 3
    for name in ("grades.parquet", "consensus.parquet", "grader_stats.json"):
        assert (results / name).is_file()
    (results / "summary.json").write_text("{}")
    assert main(["grade", str(results), "--export"]) == 1
    assert "has no 'tiles' key; give --tiles" in capsys.readouterr().err
    assert (
        main(
            [
                "grade",
                str(results),
                "--export",
                "--mix",
                "0.7",
                "--sims",
                str(built[1]),
                "--tiles",
                str(built[0].parent / "tiles"),
                "--model",
                str(built[0].parent / "model" / "model_card.json"),
            ]
        )
        == 2
    )
    assert "--mix 0.7" in capsys.readouterr().err


# --- a real browser ---------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT = Path(__file__).parents[1] / "docs" / "grading_page.png"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(
    CHROMIUM is None or not Path(CHROMEDRIVER).exists(),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
def test_grading_in_a_real_browser(results, built):
    """Enter a name, grade with the keyboard, reload: the grade is still there."""
    import uvicorn
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from skyscan.vet.app import make_app

    session = _session(results, sims=built[1], mix=0.07)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            make_app(session, per_page=6), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1300,1100",
    ):
        options.add_argument(arg)
    driver = None
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
        # htmx swaps a card when it is graded: a looked-up element can go stale, so every
        # look-up is retried inside a wait
        wait = WebDriverWait(driver, 20, ignored_exceptions=(StaleElementReferenceException,))
        driver.get(f"http://127.0.0.1:{port}/")
        name = wait.until(ec.presence_of_element_located((By.ID, "grader")))
        name.send_keys("ada", Keys.ENTER)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "article.card.current")))
        first = wait.until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "article.card")[0].get_attribute("data-item")
        )
        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys("3")  # grades the highlighted (first) candidate, moves to the second
        wait.until(
            lambda d: d.find_element(By.ID, f"c-{first}").get_attribute("class").count("graded")
        )
        second = wait.until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "article.card")[1].get_attribute("data-item")
        )
        wait.until(
            lambda d: "current" in d.find_element(By.ID, f"c-{second}").get_attribute("class")
        )
        body.send_keys("1")
        wait.until(lambda d: session.store.grades_of("ada").get(second) == 1)
        driver.refresh()
        chosen = wait.until(
            lambda d: (
                d.find_element(By.ID, f"c-{first}")
                .find_element(By.CSS_SELECTOR, "button.chosen")
                .text
            )
        )
        assert chosen.startswith("3")
        assert session.store.grades_of("ada") == {first: 3, second: 1}
        # every stamp of the page has loaded before the picture is taken
        wait.until(
            lambda d: d.execute_script(
                "return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
            )
        )
        # each strip ends with the model's saliency panel, named in the page's panel list
        widths = driver.execute_script(
            "return Array.from(document.images).map(i => i.naturalWidth)"
        )
        assert widths and set(widths) == {8 * 135 + 7 * 4}
        assert "saliency (integrated gradients" in driver.find_element(By.CLASS_NAME, "panels").text
        SCREENSHOT.parent.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(SCREENSHOT))
    finally:
        if driver is not None:
            driver.quit()
        server.should_exit = True
        thread.join(timeout=10)
    from PIL import Image

    shot = np.asarray(Image.open(SCREENSHOT).convert("L"), dtype=float)
    assert shot.shape[0] > 500 and shot.shape[1] > 800
    assert shot.std() > 20  # not a blank page


def _with_parameters(results, tmp_path, record: bool):
    """Every candidate with theta_E, as a search with a parameter network writes them; the
    network recorded in summary.json (``record``) or not."""
    from skyscan.models.card import read_card

    table = pq.read_table(results / "candidates.parquet")
    n = table.num_rows
    for name, value in (("theta_e", 1.3), ("theta_e_lo", 1.1), ("theta_e_hi", 1.6)):
        table = table.set_column(table.column_names.index(name), name, pa.array([value] * n))
    pq.write_table(table, results / "candidates.parquet")
    summary = json.loads((results / "summary.json").read_text())
    summary.pop("parameters", None)
    if record:
        torch.manual_seed(3)
        base = read_card(summary["card"])
        pcard = base.replace(
            name="params",
            model="lensparams",
            targets={
                "names": ["theta_E"],
                "units": ["arcsec"],
                "transforms": ["log"],
                "mean": [float(np.log(1.5))],
                "std": [0.5],
            },
        )
        export_model(
            get_model("lensparams", in_channels=3, n_parameters=1).eval(),
            torch.randn(4, 3, SIZE, SIZE),
            tmp_path / "params",
            pcard,
            output_name="params",
            output="means then log-variances",
        )
        summary["parameters"] = str(tmp_path / "params" / "model_card.json")
    (results / "summary.json").write_text(json.dumps(summary))


def test_hidden_simulations_carry_theta_e_when_candidates_do(results, built, tmp_path):
    """Issue 24: a search with a parameter network gives every candidate theta_E; the hidden
    simulations get theirs from the same network (recorded in summary.json), so the facts
    shown do not give them away.  Without the network recorded, nobody's theta_E is shown."""
    _with_parameters(results, tmp_path, record=True)
    session = _session(results, sims=built[1], mix=0.1, seed=4)
    sims = [it for it in session.items if it.simulated]
    assert sims and all(it.theta_e is not None for it in session.items)
    for it in sims:
        assert 0 < it.theta_e_lo < it.theta_e < it.theta_e_hi
    html = _login(_client(session, per_page=100), "ada").get("/").text
    assert html.count("&theta;<sub>E</sub>") == len(session.items)

    _with_parameters(results, tmp_path, record=False)
    hidden = _session(results, sims=built[1], mix=0.1, seed=4)
    assert all(it.theta_e is None for it in hidden.items)
    assert "&theta;<sub>E</sub>" not in _login(_client(hidden, per_page=100), "ada").get("/").text
    # without simulations mixed in, the candidates' own estimates are shown
    assert all(it.theta_e == 1.3 for it in _session(results).items)
