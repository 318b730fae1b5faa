"""The model registry: DeepLens, VGG6 and Deep-HiTS as published, the fast model's budget, and
every model's TorchScript and ONNX exports."""

import pytest
import torch
from torch import nn

from skyscan.cases.lenses.sim.survey import ConfigError
from skyscan.models import count_macs, count_parameters, get_model


def test_deeplens_matches_the_published_architecture():
    """3.5 M parameters at 3 bands (within 5%), 46 convolutions besides the 4 projections."""
    model = get_model("deeplens", in_channels=3)
    n = count_parameters(model)
    assert abs(n - 3.5e6) / 3.5e6 < 0.05, n
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    shortcuts = [m for name, m in model.named_modules() if name.endswith("shortcut") and m]
    assert len(shortcuts) == 4  # the downsampling units of stages 2-5
    assert len(convs) - len(shortcuts) == 46  # the 7x7 stem + 15 units x 3
    assert convs[0].kernel_size == (7, 7) and convs[0].out_channels == 32


def test_fast_model_is_at_least_5x_cheaper():
    deeplens = count_macs(get_model("deeplens", in_channels=3), (3, 45, 45))
    fast = count_macs(get_model("fast", in_channels=3), (3, 45, 45))
    assert deeplens / fast >= 5.0, (deeplens, fast)


@pytest.mark.parametrize("name", ["deeplens", "fast", "vgg6", "deephits"])
@pytest.mark.parametrize("bands, size", [(1, 45), (3, 45), (4, 101)])
def test_models_output_one_logit(name, bands, size):
    model = get_model(name, in_channels=bands).eval()
    with torch.no_grad():
        out = model(torch.randn(2, bands, size, size))
    assert out.shape == (2,)


def test_unknown_model():
    allowed = "deephits, deeplens, fast, lensparams, vgg6"
    with pytest.raises(ConfigError, match=f"unknown model 'resnet9' \\(allowed: {allowed}\\)"):
        get_model("resnet9")


def test_registry_refuses_a_duplicate_name():
    from torch import nn

    from skyscan.core.errors import ConfigError
    from skyscan.models import MODELS, get_model, register

    get_model("fast", in_channels=1)  # loads the built-in models

    class Impostor(nn.Module):
        pass

    with pytest.raises(ConfigError, match="'fast' is already registered"):
        register("fast")(Impostor)
    original = MODELS["fast"]
    try:
        register("fast", force=True)(Impostor)
        assert MODELS["fast"] is Impostor
    finally:
        MODELS["fast"] = original


def _layers(model, kind):
    return [m for m in model.modules() if isinstance(m, kind)]


def _convs(model):
    return [
        (m.in_channels, m.out_channels, m.kernel_size[0], m.padding[0])
        for m in _layers(model, nn.Conv2d)
    ]


def _dense(model):
    return [(m.in_features, m.out_features) for m in _layers(model, nn.Linear)]


def test_vgg6_matches_braai():
    """braai's VGG6 (Duev et al. 2019; dmitryduev/braai models/d6_m7.architecture.json and
    vgg6() in braai/braai.py) at 63x63x3: four valid 3x3 convolutions 16, 16, 32, 32 (448 +
    2,320 + 4,640 + 9,248 parameters), max pools 2 and 4 to a 6x6x32 map, dense 1,152 -> 256
    (295,168) and 256 -> 1 (257): 312,081 parameters."""
    model = get_model("vgg6", in_channels=3).eval()
    assert _convs(model) == [(3, 16, 3, 0), (16, 16, 3, 0), (16, 32, 3, 0), (32, 32, 3, 0)]
    assert [m.kernel_size for m in _layers(model, nn.MaxPool2d)] == [2, 4]
    assert [m.p for m in _layers(model, nn.Dropout)] == [0.25, 0.25, 0.5]
    assert _dense(model) == [(6 * 6 * 32, 256), (256, 1)]
    assert count_parameters(model) == 448 + 2_320 + 4_640 + 9_248 + 295_168 + 257 == 312_081
    with torch.no_grad():  # the published network reaches the 6x6 grid by itself at 63x63
        assert model.features[:-1](torch.zeros(1, 3, 63, 63)).shape == (1, 32, 6, 6)
    assert count_parameters(get_model("vgg6", in_channels=1)) == 312_081 - 2 * 9 * 16


def test_deephits_matches_the_published_architecture():
    """Deep-HiTS (Cabrera-Vives et al. 2017; guille-c/Deep-HiTS src/arch7.py) at 21x21x4:
    conv 4x4x32 with zero padding 3 (27x27 -> 24x24; 2,080 parameters), 3x3x32 (9,248), pool,
    3 x 3x3x64 (18,496 + 2 x 36,928), pool to 6x6x64, dense 64 (2,304 x 64 + 64 = 147,520
    after the mean over the rotations; 9,216 x 64 + 64 = 589,888 after the released code's
    concatenation), dense 64 (4,160), one logit (65): 255,425 and 697,793 parameters."""
    model = get_model("deephits", in_channels=4).eval()
    assert _convs(model) == [
        (4, 32, 4, 3),
        (32, 32, 3, 1),
        (32, 64, 3, 1),
        (64, 64, 3, 1),
        (64, 64, 3, 1),
    ]
    assert [m.kernel_size for m in _layers(model, nn.MaxPool2d)] == [2, 2]
    assert [m.p for m in _layers(model, nn.Dropout)] == [0.5, 0.5]
    assert {m.negative_slope for m in _layers(model, nn.LeakyReLU)} == {0.01}
    assert not _layers(model, nn.ReLU)
    assert _dense(model) == [(6 * 6 * 64, 64), (64, 64), (64, 1)]
    convs = 2_080 + 9_248 + 18_496 + 36_928 + 36_928
    assert count_parameters(model) == convs + 147_520 + 4_160 + 65 == 255_425
    with torch.no_grad():
        assert model.features[:-2](torch.zeros(1, 4, 21, 21)).shape == (1, 64, 6, 6)
    concat = get_model("deephits", in_channels=4, cyclic_pool="concat")
    assert _dense(concat)[0] == (4 * 6 * 6 * 64, 64)
    assert count_parameters(concat) == convs + 589_888 + 4_160 + 65 == 697_793
    with pytest.raises(ValueError, match="cyclic_pool"):
        get_model("deephits", cyclic_pool="max")


@pytest.mark.parametrize("bands, size", [(4, 21), (3, 45), (1, 20)])
def test_deephits_is_invariant_to_right_angle_rotations(bands, size):
    torch.manual_seed(1)
    model = get_model("deephits", in_channels=bands).eval()
    x = torch.randn(3, bands, size, size)
    with torch.no_grad():
        logits = model(x)
        assert logits.abs().max() > 1e-3  # not trivially constant
        for k in (1, 2, 3):
            rotated = model(torch.rot90(x, k, dims=(2, 3)))
            assert torch.allclose(rotated, logits, rtol=0, atol=1e-5), (k, rotated, logits)
        # The released code's concatenation is not invariant: the test can tell.
        concat = get_model("deephits", in_channels=bands, cyclic_pool="concat").eval()
        turned = concat(torch.rot90(x, 1, dims=(2, 3))) - concat(x)
        assert turned.abs().max() > 1e-3


def test_count_macs_per_stamp():
    """Convolutions: output pixels x output channels x kernel area x input channels; Deep-HiTS
    runs its convolutions on all four rotations of the stamp."""
    vgg6 = (
        61 * 61 * 16 * 9 * 3
        + 59 * 59 * 16 * 9 * 16
        + 27 * 27 * 32 * 9 * 16
        + 25 * 25 * 32 * 9 * 32
        + 1_152 * 256
        + 256
    )
    assert count_macs(get_model("vgg6", in_channels=3), (3, 63, 63)) == vgg6 == 19_042_096
    per_rotation = (
        24 * 24 * 32 * 16 * 4
        + 24 * 24 * 32 * 9 * 32
        + 12 * 12 * 64 * 9 * 32
        + 2 * 12 * 12 * 64 * 9 * 64
    )
    deephits = 4 * per_rotation + 2_304 * 64 + 64 * 64 + 64
    assert count_macs(get_model("deephits", in_channels=4), (4, 21, 21)) == deephits
    assert deephits == 79_188_032


@pytest.mark.parametrize("size", [1, 4, 6, 7, 13, 25, 45])
def test_grid_max_pool_is_adaptive_max_pooling(size):
    from skyscan.cases.transients.models._grid import GridMaxPool

    x = torch.randn(2, 3, size, size)
    expected = torch.nn.functional.adaptive_max_pool2d(x, 6)
    assert torch.equal(GridMaxPool(6)(x), expected)
    if size == 6:
        assert GridMaxPool(6)(x) is x


@pytest.mark.parametrize(
    "name, bands, size",
    [("vgg6", 3, 63), ("vgg6", 1, 45), ("deephits", 4, 21), ("deephits", 3, 45)],
)
def test_torchscript_and_onnx_exports_match_eager(name, bands, size, tmp_path):
    import onnxruntime as ort

    from skyscan.models.card import ModelCard, load_model
    from skyscan.train.export import TOLERANCE, export_model

    torch.manual_seed(2)
    net = get_model(name, in_channels=bands)
    card = ModelCard(
        name="test",
        model=name,
        case="transients",
        bands=[f"b{i}" for i in range(bands)],
        input_shape=[bands, size, size],
        pixel_scale=1.0,
        preprocessing={"method": "none"},
    )
    written = export_model(net, torch.randn(8, bands, size, size), tmp_path, card)
    assert written.export_check["torchscript_max_abs_diff"] <= TOLERANCE == 1e-4
    assert written.export_check["onnx_max_abs_diff"] <= TOLERANCE
    # Another batch size through both files (the batch axis is dynamic).
    x = torch.randn(3, bands, size, size)
    with torch.no_grad():
        eager = net.eval()(x)
        traced, _ = load_model(tmp_path / "model_card.json")
        assert torch.allclose(traced(x), eager, rtol=0, atol=1e-4)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"images": x.numpy()})[0]
    assert onnx_out.shape == (3,)
    assert abs(onnx_out - eager.numpy()).max() <= 1e-4
