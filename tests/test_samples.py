"""Sample descriptions (skyscan.data.samples): what a sample is and how it flows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from skyscan.core.errors import MismatchError
from skyscan.data.samples import (
    FLAG_EMPTY,
    FLAG_TRUNCATED,
    ArraySet,
    DihedralAverage,
    Sequences,
    Stamps,
    describe,
)


def _curves(n=50, seed=0, length=20):
    seq = Sequences(("time", "value", "error", "mask"), length=length)
    rng = np.random.default_rng(seed)
    steps = []
    for _ in range(n):
        k = int(rng.integers(3, length + 1))
        t = np.sort(rng.uniform(0, 100, k))
        steps.append(np.stack([t, rng.normal(5, 2, k), np.full(k, 0.1)], axis=1))
    return seq, seq.pad(steps)


def test_sequences_are_padded_with_a_mask_and_standardised_on_real_steps_only():
    seq, x = _curves()
    assert x.shape == (50, 20, 4)
    real = x[..., -1] > 0.5
    assert (x[~real] == 0).all()
    spec = seq.fit({"shape": [20, 4], "features": list(seq.features)}, {}, train=[x[:30], x[30:]])
    out = seq.apply(x, spec)
    assert (out[~real] == 0).all()  # padding stays zero after the preprocessing
    assert np.median(out[..., 1][real]) == pytest.approx(0.0, abs=1e-6)
    assert np.allclose(seq.invert(out, spec), x, atol=1e-4)  # invert undoes apply
    assert np.allclose(seq.apply(torch.from_numpy(x), spec).numpy(), out, atol=1e-6)


def test_sequence_scores_do_not_depend_on_the_units_of_the_values():
    """Median/MAD standardisation fitted on train: a gain and an offset on the values (other
    units, another zero point) give the same preprocessed samples."""
    seq, x = _curves()
    other = x.copy()
    other[..., 1] = (other[..., 1] * 3.7 + 12.0) * other[..., -1]
    meta = {"shape": [20, 4], "features": list(seq.features)}
    a = seq.apply(x, seq.fit(meta, {}, train=[x]))
    b = seq.apply(other, seq.fit(meta, {}, train=[other]))
    assert np.allclose(a, b, atol=1e-4)


def test_sequences_from_a_nested_catalogue_column_keep_the_last_steps():
    seq = Sequences(("time", "value", "error", "mask"), length=3)
    curve = pa.list_(
        pa.struct([("time", pa.float64()), ("value", pa.float64()), ("error", pa.float64())])
    )
    rows = [
        [{"time": float(t), "value": 1.0 + t, "error": 0.1} for t in range(5)],  # too long
        [{"time": 1.0, "value": 2.0, "error": 0.2}],
        [],
    ]
    table = pa.table({"lightcurve": pa.array(rows, curve)})
    payload, flags = seq.from_catalog(table, {})
    assert flags.tolist() == [FLAG_TRUNCATED, 0, FLAG_EMPTY]
    assert payload[0, :, 0].tolist() == [2.0, 3.0, 4.0]
    assert payload[1, :, -1].tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(MismatchError, match="no nested column 'lc'"):
        Sequences(("time", "value", "error", "mask"), 3, nested_column="lc").from_catalog(table, {})


def test_sequence_time_shift_moves_real_steps_only():
    seq, x = _curves()
    seq.time_shift = 10.0
    spec = seq.fit({"shape": [20, 4], "features": list(seq.features)}, {}, train=[x])
    pre = torch.from_numpy(seq.apply(x, spec))
    out = seq.augment(pre, spec, {"augment": True})
    real = pre[..., -1] > 0.5
    delta = (out[..., 0] - pre[..., 0])[real]
    assert delta.abs().max() <= 10.0 / spec["scale"][0] + 1e-5 and delta.abs().max() > 0
    assert torch.equal(out[..., 1:], pre[..., 1:]) and (out[~real] == 0).all()
    assert seq.tta(False) is None
    with pytest.raises(Exception, match="train.tta"):
        seq.tta(True)


def test_array_set_packs_named_parts_and_rolls_maps_together():
    arrays = ArraySet(
        {"map": (4, 6), "layers": (2, 4, 6), "vec": (3,)}, ("snr",), roll=("map", "layers")
    )
    rng = np.random.default_rng(1)
    values = {
        "map": rng.normal(size=(5, 4, 6)),
        "layers": rng.normal(size=(5, 2, 4, 6)),
        "vec": rng.normal(size=(5, 3)),
        "snr": rng.uniform(5, 20, 5),
    }
    packed = arrays.pack(values)
    assert packed.shape == (5, 24 + 48 + 3 + 1) == (5, *arrays.shape)
    parts = arrays.unpack(packed)
    for name, v in values.items():
        assert np.allclose(parts[name], v, atol=1e-6), name
    spec = arrays.fit({"shape": list(arrays.shape), "layout": arrays.layout}, {}, train=[packed])
    assert np.allclose(arrays.invert(arrays.apply(packed, spec), spec), packed, atol=1e-5)
    torch.manual_seed(0)
    rolled = arrays.unpack(arrays.augment(torch.from_numpy(packed), spec, {"augment": True}))
    for i in range(5):
        shift = next(
            s
            for s in range(6)
            if np.allclose(np.roll(values["map"][i], s, -1), rolled["map"][i].numpy(), atol=1e-6)
        )
        # the layers turn with the map, by the same shift; the vector and scalar stay
        assert np.allclose(
            np.roll(values["layers"][i], shift, -1), rolled["layers"][i].numpy(), atol=1e-6
        )
    assert np.allclose(rolled["vec"].numpy(), values["vec"], atol=1e-6)


def test_stamps_describe_what_skyscan_did_before_descriptions():
    """The stamp description is the former code path: the same spec (no 'sample' key) and
    the dihedral group for test-time averaging."""
    stamps = describe(None)
    assert isinstance(stamps, Stamps)
    meta = {"bands": ["g"], "background_sigma": [2.0], "shape": [1, 5, 5]}
    spec = stamps.fit(meta, {"clip_sigma": 5.0, "stretch": "asinh", "asinh_softening": 3.0})
    assert "sample" not in spec and spec["method"] == "noise-scaled-asinh"
    assert stamps.tta(True) == "dihedral8" and stamps.tta(False) is None
    with pytest.raises(MismatchError, match="'sequences' samples"):
        describe(None, {"sample": "sequences"})

    def model(x):
        return x[:, 0, 0, 1]  # not rotation-invariant on its own

    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    averaged = DihedralAverage(model)(x)
    assert torch.allclose(averaged, DihedralAverage(model)(torch.rot90(x, 1, (-2, -1))))
