"""Stamp classifiers and a name registry: ``get_model("deeplens", in_channels=3)``.

Every classifier maps ``(N, bands, H, W)`` preprocessed cutouts to ``(N,)`` logits (apply a
sigmoid for the score of the positive class, e.g. a lens).  A parameter network
(``lensparams``) maps them to ``(N, 2 * P)``: the means and log-variances of P normalised
physical parameters (its model card's ``targets`` says which, and how to undo the
normalisation).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from skyscan.core.errors import ConfigError

__all__ = ["get_model", "model_names", "MODELS", "register", "count_parameters", "count_macs"]

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str, force: bool = False):
    """Decorator adding a model class or factory to the registry under ``name``.

    A name already taken by another factory is refused unless ``force`` (re-importing the
    same module registers the same factory again, which is harmless).
    """

    def add(factory):
        old = MODELS.get(name)
        same = old is not None and (
            getattr(old, "__module__", None),
            getattr(old, "__qualname__", None),
        ) == (getattr(factory, "__module__", None), getattr(factory, "__qualname__", None))
        if old is not None and not same and not force:
            raise ConfigError(
                f"model {name!r} is already registered by {old.__module__} "
                "(pass force=True to replace it)"
            )
        MODELS[name] = factory
        return factory

    return add


def get_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model.

    Parameters
    ----------
    name : str
        ``fast`` (skyscan's cheap one, shared) or a case's own network (e.g. the lens
        case's ``deeplens`` and ``lensparams``, the transient case's ``vgg6`` and
        ``deephits``): :func:`model_names` lists them.
    **kwargs
        Passed to the model, e.g. ``in_channels``.
    """
    _load_builtin()
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r} (allowed: {', '.join(sorted(MODELS))})")
    return MODELS[name](**kwargs)


def model_names() -> list[str]:
    """Names of the registered models, sorted."""
    _load_builtin()
    return sorted(MODELS)


def _load_builtin() -> None:
    """Register the shared networks, then every registered case's own (the ``models``
    subpackage of its module, when it has one: :meth:`skyscan.core.case.Case.load_models`),
    so a case's network is found by name whatever was imported before."""
    from skyscan.core.case import default_registry
    from skyscan.models import fast  # noqa: F401  (registers it)

    for name in default_registry.names():
        default_registry.get(name).load_models()


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, input_shape) -> int:
    """Multiply-accumulates of one forward pass of a single input (convolutions and linear
    layers, which are all but a negligible part of these networks).  Layers that see several
    views of the input (the four rotations of ``deephits``) are counted for every view.

    Parameters
    ----------
    model : nn.Module
    input_shape : tuple
        ``(bands, H, W)``.
    """
    total = 0

    def conv_hook(module, inputs, output):
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total += output.numel() * k  # the whole batch: the input is one stamp

    def linear_hook(module, inputs, output):
        nonlocal total
        total += output.numel() * module.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros((1, *input_shape)))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return total
