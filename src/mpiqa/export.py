"""Export a quality model for deployment: one module from normalised pixels to scores,
with the prompts folded in (text features computed once and stored as constants).

Formats:

- TorchScript (``torch.jit.trace``): runs with libtorch, no Python needed.
- ONNX (torch's dynamo exporter, opset chosen by torch): runs with onnxruntime and other
  ONNX engines. Needs ``pip install 'mpiqa[onnx]'`` (onnx, onnxscript, onnxruntime).

The exported model takes ``pixels``, (N, 3, S, S) CLIP-normalised images at the model's
input size (S = ``model.image_size``, N free), and returns ``score``, (N,). Each file
carries, under the key ``mpiqa``, a JSON description of that contract (:func:`metadata`):
the preprocessing that makes ``pixels`` from an image, and what the score means, so that
a deployment without mpiqa can prepare images as ``mpiqa score`` does
(ONNX: the model's ``metadata_props``; TorchScript: an extra file of the archive).
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from mpiqa import __version__
from mpiqa.atomic import atomic_write
from mpiqa.data.transforms import MAX_ASPECT, STATS, normalize_uint8
from mpiqa.models.base import IQAModel
from mpiqa.runtime import MissingExtraError

FORMATS = ("torchscript", "onnx")


METADATA_KEY = "mpiqa"
METADATA_FORMAT = "mpiqa-export/1"


def metadata(model: IQAModel, source: str | None = None) -> dict:
    """The exported file's contract as plain data (stored as JSON under
    :data:`METADATA_KEY`): ``input`` (the tensor's name and shape, and how mpiqa makes it
    from an image: ``preprocess`` with the crop mode and its sizes, then each channel
    ``(value / 255 - mean) / std``), ``output`` (name, range, ``lower_better``), the
    mpiqa version and ``source`` (the model's name or checkpoint, when given)."""
    options = model._preprocess_kwargs()
    size, mode = options["size"], options["mode"]
    preprocess: dict = {"mode": mode, "interpolation": "bicubic (Pillow, antialiased)"}
    if mode == "center":
        resize = options.get("resize") or size
        if options.get("squash"):
            preprocess["squash_to"] = resize
        else:
            preprocess["max_aspect"] = MAX_ASPECT  # the longer side's centre is kept
            preprocess["resize_shorter_side"] = resize
        preprocess["center_crop"] = size
    elif mode == "multi":  # crops of native pixels, the score their mean
        preprocess.update(crop=size, n_crops=options["n_crops"], score="mean over the crops")
    else:  # full: the file was traced at S x S; other sizes are not guaranteed
        preprocess.update(traced_size=size)
    mean, std = STATS[options.get("stats", "clip")]
    low, high = model.score_range
    return {
        "format": METADATA_FORMAT,
        "mpiqa_version": __version__,
        "source": source,
        "input": {
            "name": "pixels",
            "shape": ["N", 3, size, size],
            "channels": "RGB",
            "preprocess": preprocess,
            "normalize": {"scale": 1 / 255, "mean": list(mean), "std": list(std)},
        },
        "output": {"name": "score", "range": [low, high], "lower_better": model.lower_better},
    }


def read_metadata(path: str | Path) -> dict:
    """The :func:`metadata` an exported file carries (``{}`` for a file exported before
    mpiqa wrote any). A TorchScript archive is read as a zip file: none of its code is
    loaded.

    Raises:
        ValueError: not an exported model file (naming it).
        ImportError: an ONNX file without the onnx package (``pip install 'mpiqa[onnx]'``).
    """
    path = Path(path)
    try:
        if path.suffix == ".onnx":
            try:
                import onnx
            except ImportError as error:
                raise MissingExtraError(
                    "reading an ONNX file's metadata needs the onnx package: "
                    "pip install 'mpiqa[onnx]'"
                ) from error
            from google.protobuf.message import DecodeError  # onnx's own dependency

            try:
                props = onnx.load(str(path), load_external_data=False).metadata_props
            except DecodeError as err:
                raise ValueError(err) from None
            text = next((p.value for p in props if p.key == METADATA_KEY), "")
        else:  # a zip archive whose extra files sit at <archive>/extra/<name>
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith(f"/extra/{METADATA_KEY}")]
                text = archive.read(names[0]).decode() if names else ""
    except (OSError, zipfile.BadZipFile, ValueError) as err:
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise ValueError(f"{path}: not an exported model ({reason})") from None
    return json.loads(text) if text else {}


def _example(model: IQAModel, batch_size: int) -> torch.Tensor:
    return torch.randn(batch_size, 3, model.image_size, model.image_size, device=model.device)


def export_torchscript(
    model: IQAModel, path: str | Path, batch_size: int = 2, source: str | None = None
) -> Path:
    """Trace ``model`` in eval mode and save it, with its :func:`metadata`. Returns the
    file written."""
    model = model.eval()
    example = _example(model, batch_size)
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns about Python control flow that is constant for a fixed model
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        model(example)  # fill the eval-time text-feature cache, so prompts are folded in
        traced = torch.jit.trace(model, example, check_trace=False)
    extra = {METADATA_KEY: json.dumps(metadata(model, source))}
    return _write(path, lambda tmp: traced.save(str(tmp), _extra_files=extra))


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


def export_onnx(
    model: IQAModel, path: str | Path, batch_size: int = 2, source: str | None = None
) -> Path:
    """Export ``model`` to ONNX with a dynamic batch dimension, with its :func:`metadata`
    in the model's ``metadata_props``. Returns the file written.

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
    program.model.metadata_props[METADATA_KEY] = json.dumps(metadata(model, source))
    # external_data=False: one self-contained file (weights inside; fine under protobuf's
    # 2 GB limit, which every model here stays below)
    return _write(path, lambda tmp: program.save(str(tmp), external_data=False))


def export(
    model: IQAModel, path: str | Path, fmt: str = "torchscript", source: str | None = None
) -> Path:
    """Export in ``fmt`` (one of :data:`FORMATS`); ``source`` names the model in the
    file's :func:`metadata`."""
    if fmt == "torchscript":
        return export_torchscript(model, path, source=source)
    if fmt == "onnx":
        return export_onnx(model, path, source=source)
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


def random_images(model: IQAModel, batch_size: int, seed: int = 0) -> torch.Tensor:
    """(N, 3, S, S) random 8-bit images normalised as ``model`` takes them: values a
    decoded image can give (normal random values would mostly fall outside them, and a
    model that resizes in 8 bits would clip them away)."""
    generator = torch.Generator().manual_seed(seed)
    size = (batch_size, 3, model.image_size, model.image_size)
    pixels = torch.randint(0, 256, size, generator=generator, dtype=torch.uint8)
    return normalize_uint8(pixels, model.preprocess_options.get("stats", "clip"))


def parity(model: IQAModel, path: str | Path, batch_size: int = 3, seed: int = 0) -> float:
    """Largest absolute difference between the exported file and eager ``model`` on
    :func:`random_images` (another batch size than the export's example)."""
    pixels = random_images(model, batch_size, seed)
    with torch.no_grad():
        eager = model.eval()(pixels.to(model.device)).float().cpu()
    return float((run_exported(path, pixels) - eager).abs().max())
