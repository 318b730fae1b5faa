"""The model registry: CMU DeepLens as published, and the fast model's budget."""

import pytest
import torch
from torch import nn

from skyscan.models import count_macs, count_parameters, get_model
from skyscan.sim.survey import ConfigError


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


@pytest.mark.parametrize("name", ["deeplens", "fast"])
@pytest.mark.parametrize("bands, size", [(1, 45), (3, 45), (4, 101)])
def test_models_output_one_logit(name, bands, size):
    model = get_model(name, in_channels=bands).eval()
    with torch.no_grad():
        out = model(torch.randn(2, bands, size, size))
    assert out.shape == (2,)


def test_unknown_model():
    with pytest.raises(ConfigError, match="unknown model 'resnet9' \\(allowed: deeplens, fast\\)"):
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


@pytest.mark.parametrize("size", [1, 4, 6, 7, 13, 25, 45])
def test_grid_max_pool_is_adaptive_max_pooling(size):
    from skyscan.models._grid import GridMaxPool

    x = torch.randn(2, 3, size, size)
    expected = torch.nn.functional.adaptive_max_pool2d(x, 6)
    assert torch.equal(GridMaxPool(6)(x), expected)
    if size == 6:
        assert GridMaxPool(6)(x) is x
