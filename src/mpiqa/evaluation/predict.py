"""Run a model over dataset records, deterministically (no augmentation)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm import tqdm

from mpiqa.data.images import ImageDecodeError
from mpiqa.data.loading import EvalTransform, RecordDataset
from mpiqa.data.records import Record
from mpiqa.models.base import IQAModel


@dataclass
class RecordPredictions:
    scores: np.ndarray  # (N,), NaN where the image could not be decoded
    targets: np.ndarray  # (N,) normalised MOS (nan where unlabelled)
    scene: np.ndarray | None = None  # (N, C) probabilities
    distortion: np.ndarray | None = None
    failed: dict[int, str] = field(default_factory=dict)  # record index -> why


class _Tolerant(Dataset):
    """Items of ``inner``, or ``{"index", "error"}`` for an image that cannot be decoded,
    so that one bad file does not stop a run over thousands (worker processes too)."""

    def __init__(self, inner: Dataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> dict:
        try:
            return self.inner[index]
        except ImageDecodeError as err:
            return {"index": index, "error": str(err)}


def _collate(items: list[dict]) -> tuple[dict | None, list[tuple[int, str]]]:
    good = [item for item in items if "error" not in item]
    bad = [(item["index"], item["error"]) for item in items if "error" in item]
    return (default_collate(good) if good else None), bad


@torch.no_grad()
def predict_records(
    model: IQAModel,
    records: Sequence[Record],
    batch_size: int = 64,
    workers: int = 0,
    image_size: int | None = None,
    resize: int | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    progress: bool = False,
) -> RecordPredictions:
    """Scores (and class probabilities where the model predicts them) for ``records``,
    resized and centre-cropped as the model's ``preprocess_options`` say (CLIP's
    pipeline by default); ``image_size`` / ``resize`` override them. ``progress``: a
    progress bar on stderr when it is a terminal.

    Raises:
        ImageDecodeError: an image cannot be decoded and ``on_error`` is ``raise``; with
            ``skip`` its score is NaN, the reason is in ``failed`` and the rest are scored.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    options = dict(getattr(model, "preprocess_options", {}))
    size = image_size or model.image_size
    resize = resize or options.get("resize") or size
    transform = EvalTransform(
        size=size, resize=resize, squash=options.get("squash", False),
        stats=options.get("stats", "clip"),
    )  # fmt: skip
    dataset: Dataset = RecordDataset(records, transform)
    if on_error == "skip":
        dataset = _Tolerant(dataset)
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=workers,
        collate_fn=_collate if on_error == "skip" else None,
    )  # fmt: skip
    was_training = model.training
    model.eval()
    scores = np.full(len(records), np.nan)
    scene: np.ndarray | None = None
    distortion: np.ndarray | None = None
    failed: dict[int, str] = {}
    bar = tqdm(total=len(records), unit="img", file=sys.stderr, disable=None if progress else True)
    for loaded in loader:
        batch, bad = loaded if on_error == "skip" else (loaded, [])
        failed.update(bad)
        bar.update(len(bad) + (len(batch["index"]) if batch is not None else 0))
        if batch is None:
            continue
        rows = batch["index"].numpy()
        pixels = batch["pixels"].to(model.device)
        if hasattr(model, "predict"):
            pred = model.predict(pixels)
            scores[rows] = pred.score.float().cpu().numpy()
            if pred.scene is not None:
                scene = _place(scene, rows, pred.scene, len(records))
            if pred.distortion is not None:
                distortion = _place(distortion, rows, pred.distortion, len(records))
        else:
            scores[rows] = model(pixels).float().cpu().numpy()
    bar.close()
    model.train(was_training)
    targets = np.array([np.nan if r.score is None else r.score for r in records])
    return RecordPredictions(scores, targets, scene, distortion, failed)


def _place(table: np.ndarray | None, rows: np.ndarray, values: torch.Tensor, n: int):
    """``values`` into ``rows`` of an (n, C) table of NaNs (made on first use)."""
    values = values.float().cpu().numpy()
    if table is None:
        table = np.full((n, values.shape[1]), np.nan, dtype=values.dtype)
    table[rows] = values
    return table
