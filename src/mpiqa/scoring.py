"""Score many image files: decoding in worker processes, results streamed in input order.

Memory stays flat however many files there are: only ``batch_size x (prefetch + 1)``
decoded images exist at any time, and results are yielded as soon as a batch is scored.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset

from mpiqa.data.images import DEFAULT_MAX_PIXELS, ImageDecodeError, load_image
from mpiqa.models.base import IQAModel

logger = logging.getLogger(__name__)

OnError = Literal["skip", "fail"]


@dataclass(frozen=True)
class FileResult:
    """The score of one file, or why it has none."""

    path: str
    score: float | None
    error: str | None = None
    extra: dict[str, str] | None = None


class _DecodedFiles(Dataset):
    def __init__(
        self,
        paths: Sequence[str],
        preprocess: Callable[..., torch.Tensor],
        max_pixels: int | None,
        min_side: int | None = None,
    ) -> None:
        self.paths = paths
        self.preprocess = preprocess
        self.max_pixels = max_pixels
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            image = load_image(
                self.paths[index], max_pixels=self.max_pixels, min_side=self.min_side
            )
            return index, self.preprocess(image), None
        except ImageDecodeError as err:
            return index, None, err.reason
        except Exception as err:  # one odd file must not end a run of 100,000
            return index, None, f"{type(err).__name__}: {err}"


def _single_thread_worker(_: int) -> None:
    # Decoding workers share the cores with the model: one torch thread each.
    torch.set_num_threads(1)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def precision_context(precision: str, device: torch.device):
    """A context running the forward pass in ``precision`` (autocast; fp32: no change).

    Raises:
        ValueError: unknown precision, or fp16 on a CPU (CPU kernels are bf16 or fp32).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device; use bf16 on a CPU")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def default_workers() -> int:
    """Decoding processes: none on 1-2 cores, where a worker only competes with the
    model's threads (2 cores, mpiqa-small, 500 JPEGs: 33.6 images/s decoding in-process
    against 29.7 with one worker, ``mpiqa benchmark --end-to-end``); else cores - 1, at
    most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    return 0 if cores <= 2 else min(8, cores - 1)


def score_files(
    model: IQAModel,
    paths: Sequence[str],
    batch_size: int = 32,
    workers: int | None = None,
    on_error: OnError = "skip",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    precision: str = "fp32",
    reduced_decode: bool = True,
) -> Iterator[FileResult]:
    """Yield one :class:`FileResult` per path, in the order of ``paths``.

    Args:
        model: the quality model (its preprocessing runs in the workers).
        paths: image files.
        batch_size: images per forward pass.
        workers: decoding processes (0 decodes in this process; default:
            :func:`default_workers`).
        on_error: ``"skip"`` yields a result with ``error`` set for a bad file and goes on;
            ``"fail"`` raises at the first one.
        max_pixels: refuse larger images (decompression bombs).
        precision: ``fp32``, or ``bf16`` / ``fp16`` autocast for the forward pass
            (``fp16`` on CUDA only); scores are returned as float32 either way.
        reduced_decode: let JPEGs be decoded at 1/2, 1/4 or 1/8 scale when the model
            resizes them below that anyway (:attr:`IQAModel.decode_min_side`); False
            decodes every image at full size (the scores of mpiqa 0.1).

    Raises:
        ValueError: an unknown precision, or fp16 on a CPU.
        ImageDecodeError: with ``on_error="fail"``, for the first file that cannot be scored.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    autocast = precision_context(precision, model.device)
    workers = default_workers() if workers is None else workers
    loader = DataLoader(
        _DecodedFiles(
            paths,
            model.preprocessor(uint8=True),  # normalised on the model's device, below
            max_pixels,
            model.decode_min_side if reduced_decode else None,
        ),  # fmt: skip
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=list,
        worker_init_fn=_single_thread_worker if workers else None,
        pin_memory=model.device.type == "cuda",
    )
    for batch in loader:
        good = [(i, model.normalize_crops(crops)) for i, crops, err in batch if err is None]
        with autocast:
            scores, extras = (
                model.describe_crops([crops for _, crops in good]) if good else ([], [])
            )
        by_index = {i: (float(s), e) for (i, _), s, e in zip(good, scores, extras, strict=True)}
        for index, _, error in batch:
            if error is not None:
                if on_error == "fail":
                    raise ImageDecodeError(paths[index], error)
                yield FileResult(paths[index], None, error)
            else:
                score, extra = by_index[index]
                yield FileResult(paths[index], score, extra=extra)
