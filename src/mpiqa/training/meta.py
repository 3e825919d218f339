"""Meta-prompt pre-training (GRMP-IQA): meta-learn the prompt tensors across distortion
tasks so that a few steps on a new task adapt them well.

First-order meta-learning over the trainable tensors only: the backbone is shared and
frozen. The task learner is an explicit copy of the meta-parameters, loaded into the
model before every task, so no model is deep-copied. Algorithms:

- Reptile (Nichol et al. 2018): theta <- theta + outer_lr * mean_tasks(phi - theta).
- First-order MAML: theta <- theta - outer_lr * mean_tasks(grad of the query loss at phi).

Here phi is theta after ``inner_steps`` Adam steps on the task's support set.

Under ``torchrun`` each process adapts every N-th task of each meta-batch (and of the
held-out tasks) and the updates are summed over processes: the same theta as one
process, up to float summation order.

Differences from the authors' published code, on purpose:

- Their task learner is never reset to the meta-parameters between tasks. Ours starts
  from theta for every task, as meta-learning requires.
- They pick the epoch on the target dataset. We select on held-out distortion *types*
  (the query loss after adaptation), and never look at a target dataset.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mpiqa import jsonfile
from mpiqa.data.datasets import load_dataset
from mpiqa.data.distortions.kadid import DISTORTION_NAMES
from mpiqa.data.distortions.tasks import DistortedDataset, make_tasks
from mpiqa.data.files import discover_images
from mpiqa.data.images import require_decodable
from mpiqa.data.loading import EvalTransform, RecordDataset
from mpiqa.distributed import Context
from mpiqa.models.mmp_iqa import MultiModalPromptIQA
from mpiqa.training.checkpoint import (
    _atomic,
    check_resumed_alike,
    rewrite_log,
    save_checkpoint,
    write_json,
)
from mpiqa.training.data_parallel import GradientSync
from mpiqa.training.losses import LossWeights, total_loss

logger = logging.getLogger(__name__)


@dataclass
class MetaConfig:
    algorithm: str = "reptile"  # reptile | fomaml
    inner_steps: int = 5
    inner_lr: float = 1e-4  # Adam, as GRMP-IQA's code
    outer_lr: float = 0.01  # GRMP-IQA's outer step
    tasks_per_batch: int = 4
    epochs: int = 10
    n_support: int = 16
    n_query: int = 16
    n_val_types: int = 4  # distortion types held out for validation
    seed: int = 0
    image_size: int | None = None
    root: str | None = None  # folder of clean images (generator tasks) ...
    dataset: str | None = None  # ... or a labelled synthetic dataset (kadid10k, tid2013) with root
    limit: int | None = None  # use at most this many clean images
    # reset: every task starts from the meta-parameters (Reptile / MAML as published);
    # persistent: the task learner carries on from the previous task and is never reset,
    # as in the GRMP-IQA authors' code (kept for comparison; one process only)
    task_learner: str = "reset"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.task_learner not in ("reset", "persistent"):
            raise ValueError(f"task_learner must be reset or persistent, got {self.task_learner!r}")
        if self.algorithm not in ("reptile", "fomaml"):
            raise ValueError(f"algorithm must be reptile or fomaml, got {self.algorithm!r}")
        if (
            min(self.inner_steps, self.tasks_per_batch, self.epochs, self.n_support, self.n_query)
            < 1
        ):
            raise ValueError(
                "inner_steps, tasks_per_batch, epochs, n_support and n_query must be >= 1"
            )


@dataclass
class Task:
    name: str
    support: dict  # {"pixels": (S, 3, H, W), "score": (S,)}
    query: dict


class TaskSource:
    """Draws tasks (one per distortion type) for an epoch."""

    types: list[str]

    def tasks(
        self, types: Sequence[str], epoch: int, config: MetaConfig, size: int
    ) -> list[Task]:  # pragma: no cover
        raise NotImplementedError


def _stack(dataset, indices=None) -> dict:
    items = [dataset[i] for i in (indices if indices is not None else range(len(dataset)))]
    return {
        "pixels": torch.stack([it["pixels"] for it in items]),
        "score": torch.stack([it["score"] for it in items]).float(),
    }


class GeneratorTasks(TaskSource):
    """Tasks from the synthetic generator over a folder of clean images; a fresh draw of
    images and levels every epoch."""

    def __init__(
        self, root: str | Path, types: Sequence[str] = DISTORTION_NAMES, limit: int | None = None
    ) -> None:
        if not Path(root).is_dir():
            raise FileNotFoundError(f"meta-pre-training root {root}: no such folder")
        self.sources = discover_images([str(root)], recursive=True).warn_unreadable().files[:limit]
        if len(self.sources) < 2:
            raise FileNotFoundError(
                f"need at least 2 clean images in {root}, found {len(self.sources)}"
            )
        # each is decoded when a task draws it: a bad one is found now, not hours in
        require_decodable(self.sources, f"meta-pre-training images under {root}")
        self.types = list(types)
        self.cache: dict = {}  # clean images at the model's size, decoded once

    def tasks(self, types, epoch, config, size):
        drawn = make_tasks(
            self.sources,
            types,
            config.n_support,
            config.n_query,
            seed=config.seed * 100_003 + epoch,
        )
        return [
            Task(
                t.distortion,
                _stack(DistortedDataset(t.support, size, self.cache)),
                _stack(DistortedDataset(t.query, size, self.cache)),
            )
            for t in drawn
        ]


class DatasetTasks(TaskSource):
    """Tasks from a labelled synthetic dataset (KADID-10k, TID2013), one per distortion
    type; support and query come from disjoint halves of the reference images."""

    def __init__(self, name: str, root: str | Path) -> None:
        self.dataset = load_dataset(name, root)
        by_type: dict[str, list] = {}
        for record in self.dataset:
            if record.distortion:
                by_type.setdefault(record.distortion, []).append(record)
        if not by_type:
            raise ValueError(f"{name} has no distortion types to build tasks from")
        paths = [r.path for records in by_type.values() for r in records]
        require_decodable(paths, f"{self.dataset.name} under {root}")
        self.by_type = by_type
        self.types = sorted(by_type)

    def tasks(self, types, epoch, config, size):
        out = []
        for name in types:
            rng = random.Random(f"{config.seed}:{epoch}:{name}")
            records = self.by_type[name]
            contents = sorted({r.content for r in records})
            rng.shuffle(contents)
            support_contents = set(contents[: max(1, len(contents) // 2)])
            parts = [
                [r for r in records if r.content in support_contents],
                [r for r in records if r.content not in support_contents] or records,
            ]
            stacked = []
            for pool, count in zip(parts, (config.n_support, config.n_query), strict=True):
                chosen = rng.sample(pool, min(count, len(pool)))
                stacked.append(_stack(RecordDataset(chosen, EvalTransform(size=size))))
            out.append(Task(name, stacked[0], stacked[1]))
        return out


def task_source(config: MetaConfig) -> TaskSource:
    """The task source a meta configuration names (root alone: generator tasks)."""
    if not config.root:
        raise ValueError(
            "meta-pre-training needs meta.root (clean images, or the dataset folder with meta.dataset)"
        )
    if config.dataset:
        return DatasetTasks(config.dataset, config.root)
    return GeneratorTasks(config.root, limit=config.limit)


class MetaTrainer:
    """Args:
    model: the prompt model; its trainable tensors are meta-learned.
    source: where tasks come from.
    config: meta-learning settings.
    out_dir: ``meta_prompts.*`` (best), ``last.*``, ``state.pt``, ``log.jsonl``.
    backbone_info: written into the checkpoints.
    loss: loss weights of the task learner (scene / distortion terms do not apply).
    context: the torchrun process group (default: one process); rank 0 writes the files.
    """

    def __init__(
        self,
        model: MultiModalPromptIQA,
        source: TaskSource,
        config: MetaConfig,
        out_dir: str | Path,
        backbone_info: dict,
        loss: LossWeights | None = None,
        context: Context | None = None,
    ) -> None:
        self.context = context or Context()
        self.sync = GradientSync(self.context, model.device)
        self.model = model
        self.loss_weights = loss or LossWeights(quality=1.0, rank=0.0, scene=0.0, distortion=0.0)
        self.source = source
        self.config = config
        self.out_dir = Path(out_dir)
        self.backbone_info = backbone_info
        self.params = [p for _, p in model.trainable_parameters()]
        if not self.params:
            raise ValueError("the model has no trainable prompt tensors to meta-learn")
        self.theta = [p.detach().clone() for p in self.params]
        types = list(source.types)
        random.Random(config.seed).shuffle(types)
        n_val = min(config.n_val_types, max(0, len(types) - 1))
        self.val_types, self.train_types = sorted(types[:n_val]), sorted(types[n_val:])
        self.size = config.image_size or model.image_size
        self.epoch = 0
        self.best = float("inf")
        self.history: list[dict] = []

    # ------------------------------------------------------------------ inner loop
    def _load(self, values: Sequence[torch.Tensor]) -> None:
        with torch.no_grad():
            for param, value in zip(self.params, values, strict=True):
                param.copy_(value)

    def _loss(self, data: dict) -> torch.Tensor:
        pixels = data["pixels"].to(self.model.device)
        prediction = self.model.predict(pixels)
        loss, _ = total_loss(prediction, {"score": data["score"]}, self.loss_weights)
        return loss

    def adapt(
        self, task: Task, steps: int | None = None, start: Sequence[torch.Tensor] | None = None
    ) -> float:
        """Load theta (or ``start``), take ``steps`` Adam steps on the support set; returns
        the query loss after adaptation (the task learner's weights stay in the model)."""
        self._load(self.theta if start is None else start)
        optimizer = torch.optim.Adam(self.params, lr=self.config.inner_lr)
        self.model.train()
        for _ in range(self.config.inner_steps if steps is None else steps):
            optimizer.zero_grad(set_to_none=True)
            self._loss(task.support).backward()
            optimizer.step()
        with torch.no_grad():
            return float(self._loss(task.query))

    def meta_step(self, tasks: Sequence[Task], n_tasks: int | None = None) -> float:
        """One outer update from ``tasks`` (this process's share of a meta-batch of
        ``n_tasks``, default ``len(tasks)``). Returns the meta-batch's mean query loss."""
        n_tasks = len(tasks) if n_tasks is None else n_tasks
        updates = [torch.zeros_like(t) for t in self.theta]
        query_loss = 0.0
        persistent = self.config.task_learner == "persistent"
        for task in tasks:
            start = getattr(self, "_learner", None) if persistent else None
            query_loss += self.adapt(task, start=start)
            if persistent:
                self._learner = [p.detach().clone() for p in self.params]
            if self.config.algorithm == "reptile":
                for u, p, t in zip(updates, self.params, self.theta, strict=True):
                    u += p.detach() - t
            else:  # first-order MAML: the query gradient at the adapted weights
                grads = torch.autograd.grad(self._loss(task.query), self.params, allow_unused=True)
                for u, g in zip(updates, grads, strict=True):
                    if g is not None:
                        u -= g
        updates = self.sync.sum_gradients(updates, self.theta)
        with torch.no_grad():
            for t, u in zip(self.theta, updates, strict=True):
                t += self.config.outer_lr * u / n_tasks
        return self.sync.sum_float(query_loss) / n_tasks

    def _mine(self, items: Sequence) -> list:
        return list(items[self.context.rank :: self.context.world_size])

    def validate(self) -> float:
        """Mean query loss after adaptation on the held-out types (same draw every epoch)."""
        if not self.val_types:
            return float("nan")
        mine = self._mine(self.val_types)
        tasks = self.source.tasks(mine, epoch=-1, config=self.config, size=self.size)
        total = self.sync.sum_float(sum(self.adapt(task) for task in tasks))
        return total / len(self.val_types)

    def train_epoch(self) -> list[float]:
        """One pass over the training types in meta-batches; per-batch mean query losses.
        Each process builds only its own tasks (tasks are seeded per type)."""
        rng = random.Random(f"{self.config.seed}:order:{self.epoch}")
        types = list(self.train_types)
        rng.shuffle(types)
        per_batch = self.config.tasks_per_batch
        batches = [types[i : i + per_batch] for i in range(0, len(types), per_batch)]
        mine = [self._mine(batch) for batch in batches]
        tasks = iter(
            self.source.tasks([t for b in mine for t in b], self.epoch, self.config, self.size)
        )
        # A progress bar on a terminal (stderr; off when piped, and on other ranks): an
        # epoch of meta-steps takes minutes on a CPU, and silence looks like a hang.
        bar = tqdm(
            total=len(batches),
            desc=f"meta epoch {self.epoch + 1}/{self.config.epochs}",
            unit="step",
            file=sys.stderr,
            disable=None if self.context.is_main else True,
            leave=False,
        )
        losses = []
        with bar:
            for batch, part in zip(batches, mine, strict=True):
                losses.append(self.meta_step([next(tasks) for _ in part], len(batch)))
                bar.set_postfix(query_loss=f"{losses[-1]:.4f}")
                bar.update()
        return losses

    # ------------------------------------------------------------------ persistence
    def _save(self, name: str, extra: dict) -> None:
        self._load(self.theta)
        save_checkpoint(
            self.out_dir / name,
            self.model,
            self.backbone_info,
            {"meta": asdict(self.config), **extra},
        )

    def _save_state(self) -> None:
        if not self.context.is_main:
            return
        state = {  # the one commit of the run (see Trainer._save_state)
            "epoch": self.epoch,
            "best": self.best,
            "history": json.dumps(self.history),
            "theta": self.theta,
        }
        _atomic(self.out_dir / "state.pt", lambda tmp: torch.save(state, tmp))
        self._save("last", {"epoch": self.epoch})

    def resume(self) -> bool:
        path = self.out_dir / "state.pt"
        if not path.is_file():
            return False
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.theta = [t.to(p.device) for t, p in zip(state["theta"], self.params, strict=True)]
        self.epoch, self.best = int(state["epoch"]), float(state["best"])
        self.history = json.loads(state["history"])
        if self.context.is_main:
            rewrite_log(self.out_dir / "log.jsonl", self.history)  # see Trainer.resume
        logger.info("resumed meta-pre-training in %s after epoch %d", self.out_dir, self.epoch)
        return True

    def fit(self, resume: bool = False, stop_after: int | None = None) -> dict:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self.resume()
            check_resumed_alike(self.epoch, self.out_dir, self.context)
        main = self.context.is_main
        if main:
            write_json(
                self.out_dir / "meta_config.json",
                {
                    "meta": asdict(self.config),
                    "train_types": self.train_types,
                    "val_types": self.val_types,
                },
            )
        done = 0
        log_file = open(self.out_dir / "log.jsonl", "a") if main else contextlib.nullcontext()
        with log_file as log:
            while self.epoch < self.config.epochs and (stop_after is None or done < stop_after):
                step_losses = self.train_epoch()
                val = self.validate()
                self.epoch += 1
                done += 1
                entry = {
                    "epoch": self.epoch,
                    "train_query_loss": float(np.mean(step_losses)),
                    "val_query_loss": val,
                }
                self.history.append(entry)
                if not np.isfinite(val) or val < self.best:
                    self.best = val if np.isfinite(val) else self.best
                    if main:
                        self._save("meta_prompts", {"epoch": self.epoch, "val_query_loss": val})
                self._save_state()
                if not main:
                    continue
                log.write(jsonfile.dumps(entry) + "\n")
                log.flush()
                logger.info(
                    "meta epoch %d/%d: train query loss %.4f, held-out query loss %.4f",
                    self.epoch,
                    self.config.epochs,
                    entry["train_query_loss"],
                    val,
                )
        if self.context.active:
            torch.distributed.barrier()  # files are complete before any rank returns
        self._load(self.theta)
        return {"best_val_query_loss": self.best, "val_types": self.val_types, "epochs": self.epoch}
