"""Every kind of bad input gets one line on stderr naming the file or key, and its exit code.

The table ``ROWS`` is the one in README.md ("When something is wrong"): each row builds a bad
input under ``tmp_path``, runs ``skyscan VERB ... --out OUT -q`` in a subprocess (``-q``: no
progress bars or info logs) and checks the exit code, that stderr is exactly one line (no
traceback) matching the row's pattern, that a usage or config error (exit 2) wrote nothing,
and that no half-written temporary file is left behind.  The internal-error paths (a bug, a
full disk, a permission error, Ctrl-C) cannot be provoked from outside a subprocess, so they
are checked on :func:`skyscan.core.command.run_guarded` in-process.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from astropy.io import fits
from astropy.wcs import WCS
from test_cli import run_cli

from skyscan import __version__
from skyscan.cli import COMMANDS
from skyscan.config import load_config
from skyscan.core.case import get_case
from skyscan.core.command import run_guarded
from skyscan.data.datasets import build_dataset
from skyscan.data.shards import images_to_array, read_images, write_table_atomic
from skyscan.models import get_model
from skyscan.models.card import ModelCard, read_card
from skyscan.train.export import export_model

# --- shared inputs (built once) ---------------------------------------------------------------


def _card_variant(card: Path, folder: Path, **changes) -> Path:
    """A copy of an exported model folder whose card differs by ``changes``."""
    shutil.copytree(card.parent, folder)
    read_card(card).replace(**changes).write(folder / card.name)
    return folder / card.name


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Two small simulation shards, a dataset built from them, a tiny exported model that
    fits it and two cards that do not (other bands, other stamp shape)."""
    torch.set_num_threads(1)  # module fixtures run before conftest's autouse one
    root = tmp_path_factory.mktemp("bad-input")
    config = load_config(None, {"seed": 1, "simulate": {"n": 40, "shard_size": 20}})
    shards = get_case("lenses").simulate(config, root / "sims", show_progress=False)
    build_dataset(shards, root / "dataset", config)
    spec = json.loads((root / "dataset" / "preprocessing.json").read_text())
    torch.manual_seed(0)
    card = ModelCard(
        name="tiny",
        model="fast",
        case="lenses",
        bands=spec["bands"],
        input_shape=spec["shape"],
        pixel_scale=0.2,
        preprocessing=spec,
    )
    export_model(get_model("fast", in_channels=3), torch.randn(4, 3, 45, 45), root / "m", card)
    card_path = root / "m" / "model_card.json"
    gr = {**spec, "bands": ["g", "r"], "scale": spec["scale"][:2], "shape": [2, 45, 45]}
    small = {**spec, "shape": [3, 33, 33]}
    return SimpleNamespace(
        root=root,
        shard=shards[0],
        dataset=root / "dataset",
        card=card_path,
        card_gr=_card_variant(
            card_path, root / "m-gr", bands=["g", "r"], input_shape=[2, 45, 45], preprocessing=gr
        ),
        card_33=_card_variant(
            card_path, root / "m-33", input_shape=[3, 33, 33], preprocessing=small
        ),
    )


# --- builders of bad inputs -------------------------------------------------------------------


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    return path


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _nan_shard(src: Path, dst: Path, n_bad: int) -> Path:
    images, table, meta = read_images(src)
    images = images.copy()
    images[:n_bad, 0, 10, 10] = np.nan
    table = table.append_column("image", images_to_array(images))
    return write_table_atomic(table, dst, meta)


def _card_copy(src: Path, dst_dir: Path, drop_file=None, drop_field=None) -> Path:
    """A copy of an exported model folder, less a file or a card field."""
    shutil.copytree(src.parent, dst_dir)
    card = dst_dir / "model_card.json"
    if drop_file:
        (dst_dir / drop_file).unlink()
    if drop_field:
        data = json.loads(card.read_text())
        del data[drop_field]
        card.write_text(json.dumps(data))
    return card


def _tile_header(ra=150.0, dec=2.0, size=64, wcs=True) -> fits.Header:
    header = fits.Header()
    if wcs:
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [ra, dec]
        w.wcs.crpix = [size / 2, size / 2]
        w.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
        header.update(w.to_header())
    return header


def _bad_tiles(folder: Path) -> Path:
    """Four tiles, each unusable: garbage bytes, a truncated file, no WCS, a missing band."""
    folder.mkdir(parents=True)
    image = np.zeros((64, 64), dtype=np.float32)
    for band in "gri":
        _write(folder / f"corrupt_{band}.fits", b"SIMPLE  =   not really a FITS file")
        fits.PrimaryHDU(image, _tile_header(wcs=False)).writeto(folder / f"nowcs_{band}.fits")
        fits.PrimaryHDU(image, _tile_header()).writeto(folder / f"truncated_{band}.fits")
        data = (folder / f"truncated_{band}.fits").read_bytes()
        (folder / f"truncated_{band}.fits").write_bytes(data[: len(data) // 3])
        if band != "i":
            fits.PrimaryHDU(image, _tile_header()).writeto(folder / f"noband_{band}.fits")
    return folder


def _good_tiles(folder: Path) -> Path:
    """One usable tile, 64 x 64 pixels of noise in g, r, i."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for band in "gri":
        fits.PrimaryHDU(rng.normal(0, 1, (64, 64)).astype(np.float32), _tile_header()).writeto(
            folder / f"good_{band}.fits"
        )
    return folder


def _catalog(path: Path, columns=("ra", "dec")) -> Path:
    values = {"ra": [150.0, 150.001], "dec": [2.0, 2.001], "mag": [20.0, 21.0]}
    pq.write_table(pa.table({c: values[c] for c in columns}), path)
    return path


def _hats(path: Path) -> Path:
    from skyscan.catalog.hats_catalog import import_catalog

    import_catalog(_catalog(path.with_suffix(".parquet")), path)
    return path


def _search(s, tmp, tiles=None, catalog=None):
    tiles = tiles or _good_tiles(tmp / "tiles")
    catalog = catalog or _hats(tmp / "catalog")
    return ["search", "--model", s.card, "--tiles", tiles, "--catalog", catalog]


def _config(tmp: Path, text: str) -> Path:
    return _write(tmp / "config.yaml", text)


# --- the table --------------------------------------------------------------------------------
# (id, argv builder (tmp_path, shared) -> argv without --out, exit code, pattern of the line).
# Patterns are formatted with {tmp} and the shared paths ({dataset}, {card}, ...), escaped.

ROWS = [
    (
        "config-unknown-key",
        lambda t, s: ["simulate", "--config", _config(t, "simulate:\n  nn: 3\n")],
        2,
        r"unknown config key 'simulate\.nn' \(allowed: .*\)",
    ),
    (
        "config-wrong-type",
        lambda t, s: ["simulate", "--config", _config(t, "simulate:\n  n: lots\n")],
        2,
        r"config key 'simulate\.n': expected integer, got 'lots'",
    ),
    (
        "config-missing",
        lambda t, s: ["simulate", "--config", t / "nope.yaml"],
        2,
        r"config file '{tmp}/nope\.yaml' does not exist",
    ),
    (
        "config-not-yaml",
        lambda t, s: ["simulate", "--config", _config(t, "simulate: [1, 2\nseed: 3\n")],
        2,
        r"config file '{tmp}/config\.yaml' is not valid YAML: line \d+, column \d+: .+",
    ),
    (
        "config-unknown-case",
        lambda t, s: ["simulate", "--config", _config(t, "case: nope\n")],
        2,
        r"config key 'case': unknown case 'nope' \(allowed: lenses, transients\)",
    ),
    (
        "config-unknown-model",
        lambda t, s: [
            "train",
            "--dataset",
            s.dataset,
            "--config",
            _config(t, "train:\n  model: nope\n"),
        ],
        2,
        r"config key 'train\.model': unknown model 'nope' "
        r"\(allowed: deephits, deeplens, fast, lensparams, vgg6\)",
    ),
    (
        "preview-corrupt-shard",
        lambda t, s: ["preview", _write(t / "shard-00000.parquet", b"PAR1 not really")],
        1,
        r"{tmp}/shard-00000\.parquet: not a readable Parquet shard \(.*\)",
    ),
    (
        "dataset-corrupt-shard",
        lambda t, s: ["dataset", s.shard, _write(t / "shard-00009.parquet", b"PAR1 garbage")],
        1,
        r"{tmp}/shard-00009\.parquet: not a readable Parquet shard \(.*\)",
    ),
    (
        "preview-truncated-shard",
        lambda t, s: [
            "preview",
            _write(t / "cut.parquet", s.shard.read_bytes()[: s.shard.stat().st_size // 2]),
        ],
        1,
        r"{tmp}/cut\.parquet: not a readable Parquet shard \(.*\)",
    ),
    (
        "dataset-truncated-shard",
        lambda t, s: [
            "dataset",
            s.shard,
            _write(t / "cut.parquet", s.shard.read_bytes()[: s.shard.stat().st_size // 2]),
        ],
        1,
        r"{tmp}/cut\.parquet: not a readable Parquet shard \(.*\)",
    ),
    (
        "dataset-nan-shard",
        lambda t, s: ["dataset", _nan_shard(s.shard, t / "nan.parquet", 3)],
        1,
        r"{tmp}/nan\.parquet: 3 of 20 images hold NaN or infinite pixels "
        r"\(15\.0% > dataset\.max_bad_fraction = 1\.0%\)",
    ),
    (
        "evaluate-not-a-dataset",
        lambda t, s: ["evaluate", "--model", s.card, "--dataset", _folder(t / "ds")],
        1,
        r"{tmp}/ds: not a complete dataset \(no manifest\.json\)",
    ),
    (
        "train-not-a-dataset",
        lambda t, s: ["train", "--dataset", t],
        1,
        r"{tmp}: not a complete dataset \(no manifest\.json\)",
    ),
    (
        "card-missing",
        lambda t, s: ["evaluate", "--model", t / "model_card.json", "--dataset", s.dataset],
        1,
        r"model card {tmp}/model_card\.json does not exist",
    ),
    (
        "card-not-json",
        lambda t, s: [
            "evaluate",
            "--model",
            _write(t / "model_card.json", "{not json"),
            "--dataset",
            s.dataset,
        ],
        1,
        r"{tmp}/model_card\.json: not a readable model card \(.*\)",
    ),
    (
        "card-missing-field",
        lambda t, s: [
            "evaluate",
            "--model",
            _card_copy(s.card, t / "m", drop_field="bands"),
            "--dataset",
            s.dataset,
        ],
        1,
        r"{tmp}/m/model_card\.json: lacks bands",
    ),
    (
        "card-torchscript-missing",
        lambda t, s: [
            "evaluate",
            "--model",
            _card_copy(s.card, t / "m", drop_file="model.ts"),
            "--dataset",
            s.dataset,
        ],
        1,
        r"{tmp}/m/model\.ts: the model file the card names does not exist",
    ),
    (
        "evaluate-bands-mismatch",
        lambda t, s: ["evaluate", "--model", s.card_gr, "--dataset", s.dataset],
        1,
        r"dataset {dataset} \(test\): bands \['g', 'r', 'i'\] do not match the model's "
        r"\['g', 'r'\]",
    ),
    (
        "evaluate-shape-mismatch",
        lambda t, s: ["evaluate", "--model", s.card_33, "--dataset", s.dataset],
        1,
        r"dataset {dataset} \(test\): cutout shape \[3, 45, 45\] does not match the model's "
        r"\[3, 33, 33\]",
    ),
    (
        "search-all-tiles-bad",
        lambda t, s: _search(s, t, tiles=_bad_tiles(t / "tiles")),
        1,
        r"{tmp}/tiles: none of the 4 tile\(s\) is usable \(corrupt: {tmp}/tiles/corrupt_g\.fits: "
        r"unreadable FITS \(.*\); every reason in {tmp}/out/tile_index/index\.json\)",
    ),
    (
        "search-catalog-missing",
        lambda t, s: _search(s, t, catalog=t / "nope"),
        1,
        r"{tmp}/nope: no such catalogue",
    ),
    (
        "search-catalog-not-hats",
        lambda t, s: _search(s, t, catalog=_catalog(t / "cat.parquet")),
        1,
        r"{tmp}/cat\.parquet: not a HATS catalogue \(make one with `skyscan catalog import "
        r"{tmp}/cat\.parquet --out CATALOG`\)",
    ),
    (
        "catalog-import-no-radec",
        lambda t, s: ["catalog", "import", _catalog(t / "cat.parquet", columns=("mag",))],
        1,
        r"{tmp}/cat\.parquet: no column\(s\) 'ra', 'dec' for the position \(columns: mag\); "
        "name yours with --ra-column and --dec-column",
    ),
    (
        "catalog-import-duplicate-ids",
        lambda t, s: [
            "catalog",
            "import",
            _write(t / "dup.csv", b"id,ra,dec\n7,10,5\n7,11,5\n"),
        ],
        1,
        r"{tmp}/dup\.csv: 1 duplicated 'id' value\(s\), e\.g\. 7: identifiers must be unique",
    ),
    (
        "train-no-gpu",
        lambda t, s: [
            "train",
            "--dataset",
            s.dataset,
            "--config",
            _config(t, "train:\n  accelerator: gpu\n"),
        ],
        3,
        r"config key 'train\.accelerator' is 'gpu' but no CUDA device is visible",
    ),
    (
        "simulate-workers-0",
        lambda t, s: ["simulate", "--n", "4", "--workers", "0"],
        2,
        r"--workers must be >= 1, got 0",
    ),
]


#: The no-GPU row (exit 3) can only be provoked where CUDA is absent: decided at collection.
_NEEDS_NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")


@pytest.mark.parametrize(
    "build, code, pattern",
    [pytest.param(*r[1:], id=r[0], marks=[_NEEDS_NO_GPU] if r[2] == 3 else []) for r in ROWS],
)
def test_bad_input_is_one_line_with_its_exit_code(shared, tmp_path, build, code, pattern):
    argv = [str(a) for a in build(tmp_path, shared)]
    verb = argv[0]
    out = tmp_path / "out"  # every verb writes there (preview: a PNG in it)
    argv += ["--out", str(out / "preview.png" if verb == "preview" else out)]
    result = run_cli(*argv, "-q")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    names = {k: re.escape(str(v)) for k, v in vars(shared).items()}
    expected = f"skyscan {verb}: error: " + pattern.format(tmp=re.escape(str(tmp_path)), **names)
    assert re.fullmatch(expected, lines[0]), f"{lines[0]!r}\n !~ {expected!r}"
    if code == 2:  # a usage or config error stops before anything is written
        assert not out.exists(), sorted(out.rglob("*"))
    # nothing half-written: no temporary file left anywhere under the output folder
    leftovers = [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers


def test_rows_are_in_the_readme():
    """README.md lists every row of the table (by id) in its "When something is wrong"."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## When something is wrong", 1)[1].split("\n## ", 1)[0]
    for row in ROWS:
        assert f"`{row[0]}`" in section, row[0]


@pytest.mark.parametrize("verb", sorted(COMMANDS))
def test_every_verb_has_version(verb):
    result = run_cli(verb, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"skyscan {verb} {__version__}"


# --- the internal-error paths, in-process -----------------------------------------------------


def _raise(exc):
    def fn():
        raise exc

    return fn


@pytest.mark.parametrize(
    "exc, code, pattern",
    [
        (
            RuntimeError("boom"),
            4,
            r"internal error: RuntimeError: boom \(a bug in skyscan; rerun with --debug .*\)",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "/ro/out.json"),
            3,
            r"/ro/out\.json: permission denied",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "/full/out.parquet"),
            3,
            r"/full/out\.parquet: no space left on the device",
        ),
        (KeyboardInterrupt(), 130, r"interrupted"),
    ],
    ids=["bug", "permission", "disk-full", "interrupted"],
)
def test_run_guarded_internal_paths(capsys, exc, code, pattern):
    assert run_guarded("skyscan x", _raise(exc)) == code
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert re.fullmatch(r"skyscan x: (error: )?" + pattern, lines[0]), lines[0]


def test_run_guarded_debug_shows_the_traceback(capsys):
    assert run_guarded("skyscan x", _raise(RuntimeError("boom")), debug=True) == 4
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "raise exc" in err
    assert err.splitlines()[-1].startswith("skyscan x: error: internal error: RuntimeError: boom")
