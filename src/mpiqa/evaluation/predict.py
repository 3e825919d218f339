"""Run a model over dataset records, deterministically (no augmentation)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from mpiqa.data.loading import EvalTransform, RecordDataset
from mpiqa.data.records import Record
from mpiqa.models.base import IQAModel


@dataclass
class RecordPredictions:
    scores: np.ndarray  # (N,)
    targets: np.ndarray  # (N,) normalised MOS (nan where unlabelled)
    scene: np.ndarray | None = None  # (N, C) probabilities
    distortion: np.ndarray | None = None


@torch.no_grad()
def predict_records(
    model: IQAModel,
    records: Sequence[Record],
    batch_size: int = 64,
    workers: int = 0,
    image_size: int | None = None,
    resize: int | None = None,
) -> RecordPredictions:
    """Scores (and class probabilities where the model predicts them) for ``records``,
    resized and centre-cropped as the model's ``preprocess_options`` say (CLIP's
    pipeline by default); ``image_size`` / ``resize`` override them."""
    options = dict(getattr(model, "preprocess_options", {}))
    size = image_size or model.image_size
    resize = resize or options.get("resize") or size
    transform = EvalTransform(
        size=size, resize=resize, squash=options.get("squash", False),
        stats=options.get("stats", "clip"),
    )  # fmt: skip
    dataset = RecordDataset(records, transform)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    was_training = model.training
    model.eval()
    scores, scene, distortion = [], [], []
    for batch in loader:
        pixels = batch["pixels"].to(model.device)
        if hasattr(model, "predict"):
            pred = model.predict(pixels)
            scores.append(pred.score.float().cpu())
            if pred.scene is not None:
                scene.append(pred.scene.float().cpu())
            if pred.distortion is not None:
                distortion.append(pred.distortion.float().cpu())
        else:
            scores.append(model(pixels).float().cpu())
    model.train(was_training)
    targets = np.array([np.nan if r.score is None else r.score for r in records])
    return RecordPredictions(
        torch.cat(scores).numpy() if scores else np.empty(0),
        targets,
        torch.cat(scene).numpy() if scene else None,
        torch.cat(distortion).numpy() if distortion else None,
    )
