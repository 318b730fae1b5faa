"""Export a trained classifier for inference: TorchScript, ONNX and a JSON model card.

The search stage uses only these files.  Both exports take preprocessed cutouts
``(N, bands, H, W)`` (float32; see the card's ``preprocessing``) and return ``(N,)`` logits;
the score is ``sigmoid(logit)``.  Each export is checked against the trained model on the
same batch (max abs difference <= 1e-4 in float32) before the card is written.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import skyscan
from skyscan.core.atomic import atomic_path
from skyscan.core.errors import EXIT_INTERNAL, SkyscanError
from skyscan.models.card import CARD_NAME, ModelCard

__all__ = ["export_model", "ExportError"]

TOLERANCE = 1e-4


class ExportError(SkyscanError, RuntimeError):
    """An exported model does not reproduce the trained one (a bug, not bad input)."""

    exit_code = EXIT_INTERNAL


def export_model(
    net: nn.Module,
    batch: torch.Tensor,
    out_dir: str | Path,
    card: ModelCard,
    output_name: str = "logit",
    output: str = "logit (score = sigmoid(logit))",
) -> ModelCard:
    """Write ``model.ts``, ``model.onnx`` and ``model_card.json`` into ``out_dir``.

    Parameters
    ----------
    net : nn.Module
        The trained network (logits out).
    batch : torch.Tensor
        Preprocessed cutouts used for tracing and for the equivalence check.
    out_dir : str or Path
    card : ModelCard
        The card to record (bands, preprocessing, threshold, ...); the export adds the file
        names, the measured differences and the versions.
    output_name, output : str
        The ONNX output's name and the card's description of what the network returns (a
        parameter network: ``"parameters"`` and its means and log-variances).

    Returns
    -------
    ModelCard
        The card as written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = net.float().eval().cpu()
    batch = batch.float().cpu().contiguous()
    with torch.inference_mode():
        reference = net(batch).numpy()

    ts_path = out_dir / "model.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices
        traced = torch.jit.trace(net, batch, check_trace=False)
        with atomic_path(ts_path) as tmp:
            traced.save(str(tmp))
        loaded = torch.jit.load(str(ts_path))
    with torch.inference_mode():
        ts_diff = float(np.abs(loaded(batch).numpy() - reference).max())

    onnx_path = out_dir / "model.onnx"
    with warnings.catch_warnings(), atomic_path(onnx_path) as tmp:
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (batch,),
            str(tmp),
            input_names=["images"],
            output_names=[output_name],
            dynamic_axes={"images": {0: "batch"}, output_name: {0: "batch"}},
            dynamo=False,
        )
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"images": batch.numpy()})[0]
    onnx_diff = float(np.abs(onnx_out - reference).max())

    for name, diff in (("TorchScript", ts_diff), ("ONNX", onnx_diff)):
        if not diff <= TOLERANCE:
            raise ExportError(f"{name} export differs from the trained model by {diff:.2e}")
    card = card.replace(
        files={"torchscript": ts_path.name, "onnx": onnx_path.name},
        output=output,
        export_check={
            "batch": int(batch.shape[0]),
            "torchscript_max_abs_diff": ts_diff,
            "onnx_max_abs_diff": onnx_diff,
            "tolerance": TOLERANCE,
        },
        skyscan_version=skyscan.__version__,
        torch_version=torch.__version__,
    )
    card.write(out_dir / CARD_NAME)
    return card
