"""Export a quality model for deployment: one module from normalised pixels to scores,
with the prompts folded in (text features computed once and stored as constants).

Formats:

- TorchScript (``torch.jit.trace``): runs with libtorch, no Python needed.
- ONNX (torch's dynamo exporter, opset chosen by torch): runs with onnxruntime and other
  ONNX engines. Needs ``pip install 'mpiqa[onnx]'`` (onnx, onnxscript, onnxruntime).

The exported model takes ``pixels``, (N, 3, S, S) CLIP-normalised images at the model's
input size (S = ``model.image_size``, N free), and returns ``score``, (N,).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from mpiqa.atomic import atomic_write
from mpiqa.models.base import IQAModel
from mpiqa.runtime import MissingExtraError

FORMATS = ("torchscript", "onnx")


def _example(model: IQAModel, batch_size: int) -> torch.Tensor:
    return torch.randn(batch_size, 3, model.image_size, model.image_size, device=model.device)


def export_torchscript(model: IQAModel, path: str | Path, batch_size: int = 2) -> Path:
    """Trace ``model`` in eval mode and save it. Returns the file written."""
    model = model.eval()
    example = _example(model, batch_size)
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns about Python control flow that is constant for a fixed model
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        model(example)  # fill the eval-time text-feature cache, so prompts are folded in
        traced = torch.jit.trace(model, example, check_trace=False)
    return _write(path, lambda tmp: traced.save(str(tmp)))


def _write(path: str | Path, save) -> Path:
    """``save(tmp)`` into a file beside ``path``, renamed onto it once complete: a failed
    export leaves an earlier file as it was, and never writes into a device or folder.

    Raises:
        ValueError: ``path`` is a folder or not a regular file, or cannot be written
            (one line naming it).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder")
    if path.exists() and not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    try:
        return atomic_write(path, save)
    except (OSError, RuntimeError) as err:  # torch's writers raise RuntimeError for I/O
        reason = " ".join(str(err).split())[:200]
        raise ValueError(f"{path}: cannot be written ({reason})") from None


@contextlib.contextmanager
def _quiet_exporter():
    # the exporter logs one warning per torchvision op it cannot register; we use none
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def export_onnx(model: IQAModel, path: str | Path, batch_size: int = 2) -> Path:
    """Export ``model`` to ONNX with a dynamic batch dimension. Returns the file written.

    Raises:
        ImportError: onnx or onnxscript is not installed (``pip install 'mpiqa[onnx]'``).
    """
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError as error:
            raise MissingExtraError(
                f"ONNX export needs the {module} package: pip install 'mpiqa[onnx]'"
            ) from error
    model = model.eval()
    example = _example(model, batch_size)
    with torch.no_grad(), _quiet_exporter():
        model(example)  # fill the eval-time text-feature cache, so prompts are folded in
        program = torch.onnx.export(
            model, (example,), dynamo=True, input_names=["pixels"],
            output_names=["score"], dynamic_shapes=({0: torch.export.Dim("batch")},),
        )  # fmt: skip
    # external_data=False: one self-contained file (weights inside; fine under protobuf's
    # 2 GB limit, which every model here stays below)
    return _write(path, lambda tmp: program.save(str(tmp), external_data=False))


def export(model: IQAModel, path: str | Path, fmt: str = "torchscript") -> Path:
    """Export in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "torchscript":
        return export_torchscript(model, path)
    if fmt == "onnx":
        return export_onnx(model, path)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def load_exported(path: str | Path, device: str = "cpu") -> torch.jit.ScriptModule:
    """Load an exported TorchScript module. TorchScript archives carry code: load only
    files you made or trust (mpiqa's own checkpoints never need this)."""
    return torch.jit.load(str(path), map_location=device).eval()


def run_exported(path: str | Path, pixels: torch.Tensor) -> torch.Tensor:
    """Scores of ``pixels`` from an exported file: onnxruntime for ``.onnx``, TorchScript
    otherwise (CPU)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (scores,) = session.run(None, {"pixels": pixels.cpu().numpy().astype(np.float32)})
        return torch.from_numpy(scores)
    with torch.no_grad():
        return load_exported(path)(pixels.cpu())


def parity(model: IQAModel, path: str | Path, batch_size: int = 3, seed: int = 0) -> float:
    """Largest absolute difference between the exported file and eager ``model`` on a
    batch of random inputs of another size than the export's example."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch_size, 3, model.image_size, model.image_size, generator=generator)
    with torch.no_grad():
        eager = model.eval()(pixels.to(model.device)).float().cpu()
    return float((run_exported(path, pixels) - eager).abs().max())
