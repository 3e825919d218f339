"""Fine-tuning runs on a dataset: one fit on a user's labels, or the N-shot benchmark
protocol over rounds (``mpiqa finetune``).

Round r draws a seeded 80/20 split by content (seed ``split_seed + r``), then ``shots``
images of its training part: those are the only labels the round reads. The starting
model and the fine-tuned one are scored on the same test part, and
``RUN/summary.json`` lists per round ``srcc``, ``zero_shot_srcc`` and
``labelled_images``, with a paired Wilcoxon test of the gains. A ``reference`` model that
is not fine-tuned (``mpiqa finetune`` passes the scoring default, which has no prompts to
adapt) is scored on the same images, so that the result says whether fine-tuning beat what
scoring without it gives (``reference_srcc``, ``gain_over_reference``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mpiqa.data.records import IQADataset, Record
from mpiqa.data.splits import Split, few_shot, random_split
from mpiqa.evaluation.metrics import srcc
from mpiqa.evaluation.plots import plot_if_available, rounds_plot
from mpiqa.evaluation.predict import predict_records
from mpiqa.models.base import IQAModel
from mpiqa.models.mmp_iqa import MultiModalPromptIQA
from mpiqa.training.checkpoint import save_checkpoint, write_json
from mpiqa.training.finetune import (
    Adapter,
    FinetuneConfig,
    FinetuneResult,
    TokenCache,
    finetune,
    fold_srcc,
    frozen_blocks,
    metrics_of,
)

logger = logging.getLogger(__name__)


def _labelled(records: list[Record], cache: TokenCache) -> list[Record]:
    return [r for r in records if r.score is not None and r.key in cache]


def _scene(cache: TokenCache, keys: list[str]):
    """The teacher's scene probabilities of ``keys`` and their mirror images, if cached."""
    if cache.teacher is None:
        return None
    mirrored = all((k, True) in cache.scene for k in keys)
    return cache.stack_scene(keys), cache.stack_scene(keys, True) if mirrored else None


def reference_scores(reference: IQAModel, records: list[Record]) -> dict[str, float]:
    """``reference``'s scores of ``records`` (images the fine-tuning cache decoded), by key."""
    scores = predict_records(reference, records, batch_size=16).scores
    return {r.key: float(s) for r, s in zip(records, scores, strict=True)}


def fit_labels(
    model: MultiModalPromptIQA,
    backbone_info: dict,
    records: list[Record],
    config: FinetuneConfig,
    out: str | Path,
    reference: IQAModel | None = None,
    data: dict | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` (in place) on every labelled record and write
    ``out/best.safetensors`` (+ ``.json``) and ``out/finetune.json``.

    ``reference``: a model that is not fine-tuned (the scoring default), scored on the same
    labels and cross-validation folds, so that the result says whether fine-tuning beat
    what scoring without it would give. ``data``: where the labels came from (the label
    file and its options), recorded in ``finetune.json`` and the checkpoint's JSON."""
    out = Path(out)
    cache = TokenCache(model, frozen_blocks(model, config), teacher=bool(config.grad_reg))
    cache.add(records, mirrored=config.flip)
    usable = _labelled(records, cache)
    if len(usable) < 6:
        raise ValueError(f"fine-tuning needs at least 6 labelled images, got {len(usable)}")
    adapter = Adapter(model, config)
    keys = [r.key for r in usable]
    labels = np.array([r.score for r in usable])
    mirrored = cache.stack(keys, mirrored=True) if config.flip else None
    result = finetune(adapter, cache.stack(keys), labels, mirrored, scene=_scene(cache, keys))
    if reference is not None:
        scores = reference_scores(reference, usable)
        ref = np.array([scores[k] for k in keys])
        result = dataclasses.replace(
            result,
            reference_srcc=float(srcc(ref, labels)),
            reference_cv_srcc=fold_srcc(ref, labels, config.folds, config.seed),
        )
    extra = {"finetune": {"config": config.to_dict(), "result": result.to_dict(),
                          **({"data": data} if data else {})}}  # fmt: skip
    save_checkpoint(out / "best", model, backbone_info, extra)
    write_json(out / "finetune.json", {**extra, "images": [r.key for r in usable]})
    return result


def wilcoxon_p(gains: list[float]) -> float | None:
    """Two-sided p of the Wilcoxon signed-rank test that the paired gains centre on 0."""
    from scipy.stats import wilcoxon

    values = [g for g in gains if g != 0]
    if len(values) < 2:
        return None
    return float(wilcoxon(values).pvalue)


def summarise(rows: list[dict]) -> dict:
    def stats(key: str) -> dict[str, float]:
        values = np.array([r[key] for r in rows], dtype=np.float64)
        return {
            "median": float(np.median(values)),
            "mean": float(values.mean()),
            "std": float(values.std(ddof=0)),
        }

    def gain(key: str, below: str) -> dict:
        gains = [r["srcc"] - r[key] for r in rows]
        return {
            "median": float(np.median(gains)),
            "mean": float(np.mean(gains)),
            "std": float(np.std(gains)),
            below: int(sum(g < 0 for g in gains)),
            "wilcoxon_p": wilcoxon_p(gains),
        }

    summary = {
        "srcc": stats("srcc"),
        "plcc": stats("plcc"),
        "zero_shot_srcc": stats("zero_shot_srcc"),
        "gain_srcc": gain("zero_shot_srcc", "rounds_below_zero_shot"),
        "labelled_images": max(r["labelled_images"] for r in rows),
    }
    if all("reference_srcc" in r for r in rows):
        summary["reference_srcc"] = stats("reference_srcc")
        summary["gain_over_reference"] = gain("reference_srcc", "rounds_below_reference")
    return summary


def run_rounds(
    make_model: Callable[[], MultiModalPromptIQA],
    backbone_info: dict,
    dataset: IQADataset,
    config: FinetuneConfig,
    shots: int,
    rounds: int,
    out: str | Path,
    split_seed: int = 0,
    test_fraction: float = 0.2,
    save_checkpoints: bool = True,
    cross_validated: bool = True,
    cache: TokenCache | None = None,
    reference: IQAModel | None = None,
    data: dict | None = None,
) -> dict:
    """The N-shot protocol (module docstring). Writes ``out/round_<r>/`` (split.json,
    finetune.json, best.safetensors) and ``out/summary.json``; returns the summary.

    ``cache`` may be shared between runs whose starting models agree in their frozen
    blocks (it must hold the scene teacher when ``config.grad_reg`` is set).
    ``reference``: a model that is not fine-tuned (the scoring default), scored on each
    round's test part too (``reference_srcc``). ``data``: where the labels came from,
    recorded in ``summary.json``."""
    out = Path(out)
    model = make_model()
    blocks = frozen_blocks(model, config)
    if cache is None:
        cache = TokenCache(model, blocks, teacher=bool(config.grad_reg))
    elif cache.blocks != blocks or (config.grad_reg and cache.teacher is None):
        raise ValueError("the shared token cache does not fit this configuration")
    start = time.perf_counter()
    cache.add([r for r in dataset if r.score is not None])
    logger.info(
        "cached the tokens after %d frozen block(s) of %d images in %.0f s",
        cache.blocks, len(cache.tokens), time.perf_counter() - start,
    )  # fmt: skip
    ref_scores = None
    if reference is not None:
        ref_scores = reference_scores(reference, _labelled(list(dataset), cache))
    rows = []
    for r in range(rounds):
        seed = split_seed + r
        split = few_shot(
            random_split(dataset, seed=seed, test_fraction=test_fraction, val_fraction=0.0),
            shots=shots, seed=seed,
        )  # fmt: skip
        round_dir = out / f"round_{r}"
        round_dir.mkdir(parents=True, exist_ok=True)
        split.save(round_dir / "split.json")
        rows.append(_one_round(make_model, backbone_info, dataset, split, config, cache,
                               round_dir, r, seed, save_checkpoints, cross_validated))  # fmt: skip
        row = rows[-1]
        if ref_scores is not None:
            test = _labelled(dataset.subset(split.test), cache)
            row["reference_srcc"] = float(
                srcc(np.array([ref_scores[t.key] for t in test]), [t.score for t in test])
            )
        logger.info(
            "round %d/%d: test SRCC %.4f (starting model %.4f, %+.4f), %d labels, %d steps",
            r + 1, rounds, row["srcc"], row["zero_shot_srcc"],
            row["srcc"] - row["zero_shot_srcc"], row["labelled_images"], row["chosen_steps"],
        )  # fmt: skip
    record = {
        "dataset": dataset.name,
        **({"data": data} if data else {}),
        "shots": shots,
        "rounds": rows,
        "summary": summarise(rows),
        "config": config.to_dict(),
        "backbone": backbone_info,
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_json(out / "summary.json", record)
    series = {
        f"{shots}-shot fine-tuned": [r["srcc"] for r in rows],
        "starting model (zero-shot)": [r["zero_shot_srcc"] for r in rows],
    }
    if ref_scores is not None:
        series["reference (not fine-tuned)"] = [r["reference_srcc"] for r in rows]
    plot_if_available(
        rounds_plot,
        series,
        out / "rounds.png",
        f"{dataset.name}: {shots} labels, {rounds} rounds",
    )
    return record


def _one_round(
    make_model, backbone_info, dataset: IQADataset, split: Split, config: FinetuneConfig,
    cache: TokenCache, round_dir: Path, r: int, seed: int, save: bool, cross_validated: bool,
) -> dict:  # fmt: skip
    model = make_model()
    if config.flip:
        cache.add(dataset.subset(split.train), mirrored=True)
    train = _labelled(dataset.subset(split.train), cache)
    test = _labelled(dataset.subset(split.test), cache)
    round_config = copy.deepcopy(config)
    round_config.seed = config.seed + r
    adapter = Adapter(model, round_config)
    test_features = cache.stack([t.key for t in test])
    test_targets = np.array([t.score for t in test])
    zero_shot = metrics_of(adapter.predict(test_features), test_targets)
    keys = [t.key for t in train]
    mirrored = cache.stack(keys, mirrored=True) if config.flip else None
    result = finetune(adapter, cache.stack(keys), [t.score for t in train], mirrored,
                      cross_validated=cross_validated, scene=_scene(cache, keys))  # fmt: skip
    tuned = metrics_of(adapter.predict(test_features), test_targets)
    extra = {"finetune": {"config": round_config.to_dict(), "result": result.to_dict()}}
    if save:
        save_checkpoint(round_dir / "best", model, backbone_info, extra)
    row = {
        "round": r,
        "split_seed": seed,
        "labelled_images": result.labelled_images,
        "test_images": len(test),
        "srcc": tuned["srcc"],
        "plcc": tuned["plcc"],
        "zero_shot_srcc": zero_shot["srcc"],
        "zero_shot_plcc": zero_shot["plcc"],
        "chosen_steps": result.chosen_steps,
        "cv_srcc": result.cv_srcc,
        "cv_zero_shot_srcc": result.cv_zero_shot_srcc,
    }
    write_json(round_dir / "finetune.json", {**extra, "test": row})
    return row
