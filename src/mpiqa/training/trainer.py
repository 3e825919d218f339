"""The training loop: prompt (and optionally last-block) training with model selection
on a validation part, atomic checkpoints, and exact resume.

Reproducibility: the batch order of epoch e is drawn from a generator seeded by
(seed, e), and every image's augmentation from (seed, e, index) (see
:class:`mpiqa.data.loading.RecordDataset`). A run resumed after epoch e therefore goes on
exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader

from mpiqa import jsonfile
from mpiqa.data.loading import RecordDataset, seed_worker
from mpiqa.data.records import Record
from mpiqa.distributed import Context
from mpiqa.evaluation.metrics import all_metrics
from mpiqa.evaluation.predict import predict_records
from mpiqa.models.mmp_iqa import MultiModalPromptIQA
from mpiqa.training.checkpoint import (
    _atomic,
    assign_tensors,
    check_resumed_alike,
    rewrite_log,
    save_checkpoint,
)
from mpiqa.training.config import TrainConfig
from mpiqa.training.data_parallel import GlobalBatchSampler, GradientSync
from mpiqa.training.losses import total_loss

logger = logging.getLogger(__name__)


class Backward(Protocol):
    """How gradients are made from a batch's loss (gradient regularisation plugs in here).

    ``loss`` is the global batch's loss; ``prediction`` and ``batch`` are this rank's
    slice. A strategy that sums gradients over ranks itself (because it transforms them
    non-linearly) sets ``sums_gradients = True`` and uses ``sync``; otherwise the trainer
    sums ``.grad`` afterwards. Every loss is multiplied by ``loss_scale`` before its
    backward pass (fp16's loss scaling; the trainer sets it), so the gradients written
    are that many times the true ones, which the trainer divides out before the step.
    """

    sync: GradientSync
    loss_scale: Callable[[torch.Tensor], torch.Tensor]

    def backward(
        self, loss: torch.Tensor, prediction, batch: dict, params: list[torch.nn.Parameter]
    ) -> None: ...


class PlainBackward:
    sums_gradients = False

    def __init__(self) -> None:
        self.sync = GradientSync()
        self.loss_scale = _unscaled

    def backward(self, loss, prediction, batch, params) -> None:
        self.loss_scale(loss).backward()


def _unscaled(loss: torch.Tensor) -> torch.Tensor:
    return loss


class Trainer:
    """Args:
    model: the prompt model (its trainable parameters are what trains).
    train_set: training images with augmentation.
    val_records: the validation part, scored without augmentation after each epoch.
    config: the run's configuration.
    out_dir: where ``best.*``, ``last.*``, ``state.pt`` and ``log.jsonl`` go.
    backbone_info: how to rebuild the backbone (written into checkpoints).
    backward: how gradients are computed (default: plain backpropagation).
    context: the torchrun process group (default: one process). With N processes each
        handles 1/N of every global batch (``config.train.batch_size``, which N must
        divide) and of the validation images; only rank 0 writes files.
    """

    def __init__(
        self,
        model: MultiModalPromptIQA,
        train_set: RecordDataset,
        val_records: Sequence[Record],
        config: TrainConfig,
        out_dir: str | Path,
        backbone_info: dict,
        backward: Backward | None = None,
        context: Context | None = None,
    ) -> None:
        self.context = context or Context()
        world = self.context.world_size
        # batch_size 0: every training image in one batch (GRMP-IQA's few-shot fine-tuning)
        self.batch_size = config.train.batch_size or len(train_set)
        if self.batch_size % world:
            raise ValueError(
                f"train.batch_size {self.batch_size} must be a multiple of the "
                f"number of processes ({world}): it is the global batch"
            )
        if len(train_set) < world:
            raise ValueError(f"{len(train_set)} training images for {world} processes")
        self.model = model
        self.train_set = train_set
        self.val_records = list(val_records)
        self.config = config
        self.out_dir = Path(out_dir)
        self.backbone_info = backbone_info
        self.backward = backward or PlainBackward()
        self.sync = GradientSync(self.context, model.device)
        self.backward.sync = self.sync
        # fp16 gradients below 6e-8 flush to zero: scale the loss up, divide the gradients
        # back before the step and skip steps whose gradients overflowed (torch.amp's
        # dynamic loss scaling). bf16 has fp32's range and needs none.
        self.scaler = torch.amp.GradScaler(
            model.device.type, enabled=config.train.precision == "fp16"
        )
        self.backward.loss_scale = self.scaler.scale
        self.params = [p for _, p in model.trainable_parameters()]
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        optim = config.optim
        if optim.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(
                self.params, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay
            )
        else:
            self.optimizer = torch.optim.AdamW(
                self.params, lr=optim.lr, weight_decay=optim.weight_decay
            )
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | ReduceLROnPlateau
        if optim.schedule == "plateau":
            # lr x factor when the training loss stops falling (the GRMP-IQA authors watch
            # the test score here; a training-side signal keeps the test part unseen)
            self.scheduler = ReduceLROnPlateau(
                self.optimizer, mode="min", factor=optim.plateau_factor,
                patience=optim.plateau_patience,
            )  # fmt: skip
        else:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.epoch = 0
        self.best: dict = {"srcc": -math.inf, "epoch": None}
        self.history: list[dict] = []

    def _lr_factor(self, epoch: int) -> float:
        optim, total = self.config.optim, self.config.train.epochs
        if epoch < optim.warmup_epochs:
            return (epoch + 1) / (optim.warmup_epochs + 1)
        if optim.schedule == "constant":
            return 1.0
        progress = (epoch - optim.warmup_epochs) / max(1, total - optim.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * progress))

    def _autocast(self):
        precision = self.config.train.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(self.model.device.type, dtype=dtype)

    def _loader(self, epoch: int) -> DataLoader:
        loop = self.config.train
        self.train_set.set_epoch(epoch)
        generator = torch.Generator().manual_seed(
            int(np.random.SeedSequence([loop.seed, epoch]).generate_state(1)[0])
        )
        workers = loop.workers if loop.workers is not None else 0
        sampler = GlobalBatchSampler(
            len(self.train_set), self.batch_size, generator,
            drop_last=len(self.train_set) > self.batch_size, context=self.context,
        )  # fmt: skip
        # the loader draws its workers' base seed from the same generator before the
        # sampler runs, as with shuffle=True: batches equal those of earlier versions
        return DataLoader(
            self.train_set, batch_sampler=sampler, num_workers=workers, generator=generator,
            worker_init_fn=seed_worker if workers else None,
        )  # fmt: skip

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        sums: dict[str, float] = {}
        steps = 0
        for batch in self._loader(epoch):
            batch["pixels"] = batch["pixels"].to(self.model.device)
            with self._autocast():
                prediction = self.model.predict(batch["pixels"])
            loss, terms = total_loss(
                self.sync.global_prediction(prediction), self.sync.global_batch(batch),
                self.config.loss,
            )  # fmt: skip
            self.optimizer.zero_grad(set_to_none=True)
            self.backward.backward(loss, prediction, batch, self.params)
            if not getattr(self.backward, "sums_gradients", False):
                self.sync.sum_param_gradients(self.params)
            # gradients are summed over ranks first, so every rank skips the same steps
            self.scaler.step(self.optimizer)
            self.scaler.update()
            steps += 1
            for key, value in {"loss": float(loss.detach()), **terms}.items():
                sums[key] = sums.get(key, 0.0) + value
        means = {key: value / max(steps, 1) for key, value in sums.items()}
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(means.get("loss", 0.0))
        else:
            self.scheduler.step()
        return means

    def validate(self) -> dict[str, float]:
        if len(self.val_records) < 3:
            return {}
        data = self.config.data
        rank, world = self.context.rank, self.context.world_size
        mine = self.val_records[rank::world]
        preds = predict_records(
            self.model, mine, self.config.train.eval_batch_size,
            image_size=data.image_size, resize=data.resize,
        )  # fmt: skip
        scores, targets = preds.scores, preds.targets
        if self.context.active:
            # every rank gets all scores back in record order, so all take the same decisions
            device = self.model.device
            gathered = [
                self.sync.gather(torch.from_numpy(np.asarray(a, dtype=np.float64)).to(device))
                for a in (scores, targets)
            ]
            scores, targets = np.empty(len(self.val_records)), np.empty(len(self.val_records))
            for r in range(world):
                scores[r::world] = gathered[0][r].cpu().numpy()
                targets[r::world] = gathered[1][r].cpu().numpy()
        return all_metrics(scores, targets)

    # ----------------------------------------------------------------- persistence
    def _save_state(self) -> None:
        if not self.context.is_main:
            return
        # state.pt is the run's one commit: the trained tensors, optimiser, scheduler and
        # history renamed into place together, so a crash leaves the previous epoch or
        # this one, never a mix. last.safetensors is a copy for users, written after it.
        state = {
            "epoch": self.epoch,
            "model": {k: v.detach().cpu() for k, v in self.model.checkpoint_state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),  # empty unless fp16
            "best": {k: (v if v != -math.inf else None) for k, v in self.best.items()},
            "history": json.dumps(self.history),
        }
        _atomic(self.out_dir / "state.pt", lambda tmp: torch.save(state, tmp))
        save_checkpoint(
            self.out_dir / "last", self.model, self.backbone_info, {"epoch": self.epoch}
        )

    def resume(self) -> bool:
        """Continue from ``out_dir/state.pt`` if it exists. Returns whether it did."""
        state_path = self.out_dir / "state.pt"
        if not state_path.is_file():
            return False
        from safetensors.torch import load_file

        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if "model" in state:
            assign_tensors(self.model, state["model"], state_path)
        else:  # a run saved before the tensors moved into state.pt
            tensors = load_file(str(self.out_dir / "last.safetensors"))
            assign_tensors(self.model, tensors, self.out_dir / "last.safetensors")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.best = {k: (-math.inf if v is None else v) for k, v in state["best"].items()}
        self.history = json.loads(state["history"])
        if self.context.is_main:
            # epochs logged after the last commit are done again: log them once
            rewrite_log(self.out_dir / "log.jsonl", self.history)
        logger.info("resumed %s after epoch %d", self.out_dir, self.epoch)
        return True

    def fit(self, resume: bool = False, stop_after: int | None = None) -> dict:
        """Train until ``config.train.epochs`` (or ``stop_after`` epochs in this call, to
        simulate an interruption). Returns the best validation metrics and epoch."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self.resume()
            check_resumed_alike(self.epoch, self.out_dir, self.context)
        done_now = 0
        main = self.context.is_main
        log_file = open(self.out_dir / "log.jsonl", "a") if main else contextlib.nullcontext()
        with log_file as log:
            while self.epoch < self.config.train.epochs:
                if stop_after is not None and done_now >= stop_after:
                    break
                start = time.perf_counter()
                train_terms = self.train_epoch(self.epoch)
                val = self.validate()
                self.epoch += 1
                done_now += 1
                entry = {
                    "epoch": self.epoch,
                    "train": train_terms,
                    "val": val,
                    "seconds": round(time.perf_counter() - start, 2),
                }
                self.history.append(entry)
                if main:
                    log.write(jsonfile.dumps(entry) + "\n")
                    log.flush()
                # constant predictions give a NaN correlation: rank them below any real one
                srcc = val.get("srcc", float("nan")) if val else float("nan")
                improved = bool(val) and (srcc if math.isfinite(srcc) else -1.0) > self.best["srcc"]
                if improved or (not val and self.epoch == self.config.train.epochs):
                    self.best = (
                        {**val, "epoch": self.epoch}
                        if val
                        else {"srcc": -math.inf, "epoch": self.epoch}
                    )
                    if val and not math.isfinite(srcc):
                        self.best["srcc"] = -1.0
                    if main:
                        save_checkpoint(
                            self.out_dir / "best",
                            self.model,
                            self.backbone_info,
                            {"epoch": self.epoch, "val": val, "config": self.config.to_dict()},
                        )
                self._save_state()
                if main:
                    logger.info(
                    "epoch %d/%d loss %.4f val srcc %s (%.1fs)", self.epoch, self.config.train.epochs,
                    train_terms.get("loss", float("nan")), f"{val['srcc']:.4f}" if val else "n/a", entry["seconds"],
                )  # fmt: skip
        if self.context.active:
            torch.distributed.barrier()  # files are complete before any rank returns
        return self.best
