"""Export a trained classifier for inference: TorchScript, ONNX and a JSON model card.

The search stage uses only these files.  Both exports take preprocessed cutouts
``(N, bands, H, W)`` (float32; see the card's ``preprocessing``) and return ``(N,)`` logits;
the lens score is ``sigmoid(logit)``.  Each export is checked against the trained model on the
same batch (max abs difference <= 1e-4 in float32) before the card is written.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import skyscan

__all__ = ["export_model", "load_exported", "write_json_atomic", "ExportError"]

TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """An exported model does not reproduce the trained one."""


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to ``path`` through a temporary file in the same folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float) + "\n")
    os.replace(tmp, path)


def export_model(net: nn.Module, batch: torch.Tensor, out_dir: str | Path, card: dict) -> dict:
    """Write ``model.ts``, ``model.onnx`` and ``model_card.json`` into ``out_dir``.

    Parameters
    ----------
    net : nn.Module
        The trained network (logits out).
    batch : torch.Tensor
        Preprocessed cutouts used for tracing and for the equivalence check.
    out_dir : str or Path
    card : dict
        Model card fields to record (bands, preprocessing, metrics, ...); the export adds
        file names and the measured differences.

    Returns
    -------
    dict
        The model card.
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
        tmp = out_dir / ".model.ts.tmp"
        traced.save(str(tmp))
        os.replace(tmp, ts_path)
        loaded = torch.jit.load(str(ts_path))
    with torch.inference_mode():
        ts_diff = float(np.abs(loaded(batch).numpy() - reference).max())

    onnx_path = out_dir / "model.onnx"
    tmp = out_dir / ".model.onnx.tmp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (batch,),
            str(tmp),
            input_names=["images"],
            output_names=["logit"],
            dynamic_axes={"images": {0: "batch"}, "logit": {0: "batch"}},
            dynamo=False,
        )
    os.replace(tmp, onnx_path)
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {"images": batch.numpy()})[0]
    onnx_diff = float(np.abs(onnx_out - reference).max())

    for name, diff in (("TorchScript", ts_diff), ("ONNX", onnx_diff)):
        if not diff <= TOLERANCE:
            raise ExportError(f"{name} export differs from the trained model by {diff:.2e}")
    card = dict(card)
    card.update(
        files={"torchscript": ts_path.name, "onnx": onnx_path.name},
        output="logit (score = sigmoid(logit))",
        export_check={
            "batch": int(batch.shape[0]),
            "torchscript_max_abs_diff": ts_diff,
            "onnx_max_abs_diff": onnx_diff,
            "tolerance": TOLERANCE,
        },
        skyscan_version=skyscan.__version__,
        torch_version=torch.__version__,
    )
    write_json_atomic(out_dir / "model_card.json", card)
    return card


def load_exported(card_path: str | Path):
    """Load an exported model from its card.

    Returns
    -------
    model : torch.jit.ScriptModule
        Preprocessed cutouts in, logits out.
    card : dict
    """
    card_path = Path(card_path)
    if not card_path.is_file():
        raise FileNotFoundError(f"model card {card_path} does not exist")
    card = json.loads(card_path.read_text())
    path = card_path.parent / card["files"]["torchscript"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise ExportError(f"{path}: cannot load the TorchScript model ({exc})") from None
    return model.eval(), card
