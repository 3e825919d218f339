"""``mpiqa benchmark --end-to-end DIR``: where the time of scoring real files goes.

Four measurements on the same files, each on its own so that the bottleneck shows:

- ``startup``: building the model (weights read, stem folded), as ``mpiqa score`` does
  (Python's start and imports, about 2-3 s more for the command, are not in it);
- ``decode``: decoding and preprocessing in this process, one image at a time (what each
  decoding worker does);
- ``model``: the forward passes alone on preprocessed batches (at most 8; host-to-device
  copy and the copy back included), after one warm-up batch;
- ``pipeline``: :func:`mpiqa.scoring.score_files` end to end with its worker processes,
  which overlaps decoding with the model.

Rates are images per second. With ``w`` workers on ``c`` cores the pipeline can at best
reach min(model, decode x w) when the cores suffice; a pipeline far below both says the
cores are shared (decoding workers and the model's threads compete).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import torch

from mpiqa.data.files import discover_images
from mpiqa.data.images import ImageDecodeError, load_image
from mpiqa.models.registry import create_model
from mpiqa.scoring import default_workers, precision_context, score_files


@dataclass
class EndToEndResult:
    model: str
    images: int
    batch_size: int
    workers: int
    device: str
    precision: str
    threads: int
    startup_s: float
    decode_images_per_s: float
    model_images_per_s: float
    pipeline_images_per_s: float
    failed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        rows = [
            ("start-up (model built, s)", f"{self.startup_s:.2f}"),
            ("decode + preprocess, 1 process (img/s)", f"{self.decode_images_per_s:.1f}"),
            ("model alone, batches of "
             f"{self.batch_size} (img/s)", f"{self.model_images_per_s:.1f}"),
            (f"score_files, {self.workers} worker(s) (img/s)", f"{self.pipeline_images_per_s:.1f}"),
        ]  # fmt: skip
        head = (
            f"{self.model} on {self.images} files ({self.failed} undecodable), {self.device}, "
            f"{self.precision}, {self.threads} threads"
        )
        width = max(len(r[0]) for r in rows)
        return "\n".join([head, *(f"{name:<{width}}  {value:>8}" for name, value in rows)])


def run_end_to_end(
    folder: str,
    model_name: str | None = None,
    limit: int = 500,
    batch_size: int = 32,
    workers: int | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    backbone: str | None = None,
    weights: str | None = None,
) -> EndToEndResult:
    """Measure scoring of up to ``limit`` images under ``folder`` (recursive), with
    ``model_name`` (default: the default model) on ``backbone``/``weights`` when given
    (``weights="random"`` times an architecture whose weights are not here).

    Raises:
        FileNotFoundError: no images in ``folder``.
    """
    from mpiqa.models.registry import DEFAULT_MODEL

    name = model_name or DEFAULT_MODEL
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--end-to-end {folder}: no such folder")
    files = discover_images([folder], recursive=True).warn_unreadable().files[:limit]
    if not files:
        raise FileNotFoundError(f"no image files in {folder}")
    workers = default_workers() if workers is None else workers
    start = time.perf_counter()
    chosen = {k: v for k, v in (("backbone", backbone), ("weights", weights)) if v}
    model = create_model(name, device=device, **chosen).for_inference()
    startup = time.perf_counter() - start

    # the model is timed on at most 8 batches: all crops of 500 images at 384 x 384 would
    # hold 0.9 GB
    kept = 8 * batch_size
    crops = []
    start = time.perf_counter()
    failed = 0
    for path in files:
        try:
            crop = model.preprocess(load_image(path, min_side=model.decode_min_side))
        except ImageDecodeError:
            failed += 1  # counted, as score_files reports them; timed all the same
            continue
        if len(crops) < kept:
            crops.append(crop)
    decode = len(files) / (time.perf_counter() - start)
    if not crops:
        raise FileNotFoundError(f"none of the files in {folder} could be decoded")

    batches = [crops[i : i + batch_size] for i in range(0, len(crops), batch_size)]
    with precision_context(precision, model.device):
        model.score_crops(batches[0])  # warm-up
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        start = time.perf_counter()
        for batch in batches:
            model.score_crops(batch)  # returns CPU tensors: the copy back is included
        forward = len(crops) / (time.perf_counter() - start)

    start = time.perf_counter()
    results = list(
        score_files(model, files, batch_size=batch_size, workers=workers, precision=precision)
    )
    pipeline = len(results) / (time.perf_counter() - start)
    return EndToEndResult(
        model=name, images=len(files), batch_size=batch_size, workers=workers,
        device=str(model.device), precision=precision, threads=torch.get_num_threads(),
        startup_s=startup, decode_images_per_s=decode, model_images_per_s=forward,
        pipeline_images_per_s=pipeline, failed=failed,
    )  # fmt: skip
