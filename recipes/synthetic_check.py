"""Judge quality models on synthetic distortions of clean images that a backbone run held
apart from its training (``pretrain.json``'s ``val_clean``): SRCC of the score against
the level's quality target, and how often the predicted distortion class is right.

    python recipes/synthetic_check.py runs/mpiqa-small/backbone/pretrain.json \
        mpiqa-small mpiqa-tiny [CHECKPOINT.safetensors ...] [--size 384] [--json OUT]

The same distorted images (rendered once at ``--size``, the shorter side resized and
centre cropped, as pretraining renders them) go to every model, through each model's own
preprocessing. Models that a run's training did see these clean images with (mpiqa-tiny
trained on all 110) are favoured by it; the report says which.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from mpiqa.data.distortions.tasks import level_quality, render
from mpiqa.evaluation.metrics import plcc, srcc
from mpiqa.models.checkpoint import load_checkpoint
from mpiqa.models.registry import create_model, list_models
from mpiqa.prompts.vocab import distortion_class
from mpiqa.training.few_shot import wilcoxon_p
from mpiqa.training.pretrain import synthetic_items


def _model(name: str):
    if name in list_models():
        return create_model(name).for_inference()
    return load_checkpoint(name).for_inference()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pretrain_json")
    parser.add_argument("models", nargs="+")
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--per-image", type=int, default=30)
    parser.add_argument("--json", help="write the figures and per-image scores here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = json.loads(Path(args.pretrain_json).read_text())
    clean = summary["config"]["notes"]["val_clean"]
    seed = summary["config"]["seed"] + 1  # the seed pretrain_backbone drew them with
    items = synthetic_items(clean, args.per_image, seed)
    cache: dict = {}
    images = [render(item, args.size, cache) for item in items]
    target = np.array([level_quality(item.level) for item in items])
    truth = [distortion_class(item.distortion) if item.level else None for item in items]
    report: dict = {
        "clean_images": len(clean),
        "items": len(items),
        "sources": [item.source for item in items],
        "targets": target.tolist(),
        "models": {},
    }
    scores_by_model = {}
    for name in args.models:
        model = _model(name)
        scores, named = [], []
        for begin in range(0, len(images), 16):
            crops = [model.preprocess(im) for im in images[begin : begin + 16]]
            s, extra = model.describe_crops(crops)
            scores += [float(v) for v in s]
            named += [e.get("distortion") for e in extra]
        scores = np.array(scores)
        scores_by_model[name] = scores
        labelled = [i for i, t in enumerate(truth) if t is not None]
        accuracy = (
            float(np.mean([named[i] == truth[i] for i in labelled]))
            if named and named[0] is not None
            else None
        )
        # per clean image: SRCC over its own distortions (content held fixed)
        per_source = []
        for source in clean:
            idx = [i for i, it in enumerate(items) if it.source == source]
            per_source.append(srcc(scores[idx], target[idx]))
        report["models"][name] = {
            "srcc": srcc(scores, target),
            "plcc": plcc(scores, target),
            "per_image_srcc_median": float(np.median(per_source)),
            "distortion_accuracy": accuracy,
            "per_image_srcc": per_source,
            "scores": scores.tolist(),  # per distorted image, in the order of "sources"
        }
        print(
            f"{name}: SRCC {srcc(scores, target):.4f} PLCC {plcc(scores, target):.4f}, "
            f"median per-image SRCC {np.median(per_source):.4f}, distortion class accuracy "
            f"{'n/a' if accuracy is None else f'{accuracy:.3f}'} "
            f"(chance {1 / 11:.3f})"
        )
    names = list(scores_by_model)
    for a, b in zip(names, names[1:], strict=False):
        pa = np.array(report["models"][a]["per_image_srcc"])
        pb = np.array(report["models"][b]["per_image_srcc"])
        p = wilcoxon_p(list(pa - pb))
        print(
            f"{a} vs {b}: per-image SRCC difference, median {np.median(pa - pb):+.4f}, "
            f"paired Wilcoxon p={p if p is None else f'{p:.3g}'}"
        )
        report[f"{a}_vs_{b}_p"] = p
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
