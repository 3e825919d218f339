"""Export a quality model for deployment: one module from normalised pixels to scores,
with the prompts folded in (text features computed once and stored as constants).

TorchScript is supported; ONNX is not yet (it needs the onnx / onnxruntime packages).
The exported module takes (N, 3, S, S) CLIP-normalised pixels at the model's input size
(S = ``model.image_size``) and returns (N,) scores; any N works.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from mpiqa.models.base import IQAModel


def export_torchscript(model: IQAModel, path: str | Path, batch_size: int = 2) -> Path:
    """Trace ``model`` in eval mode and save it. Returns the file written."""
    model = model.eval()
    example = torch.randn(batch_size, 3, model.image_size, model.image_size, device=model.device)
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns about Python control flow that is constant for a fixed model
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        model(example)  # fill the eval-time text-feature cache, so prompts are folded in
        traced = torch.jit.trace(model, example, check_trace=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    traced.save(str(path))
    return path


def load_exported(path: str | Path, device: str = "cpu") -> torch.jit.ScriptModule:
    """Load an exported module. TorchScript archives carry code: load only files you made
    or trust (mpiqa's own checkpoints never need this)."""
    return torch.jit.load(str(path), map_location=device).eval()
