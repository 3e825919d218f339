"""Data-parallel training under ``torchrun``, equal to one process with the same global
batch.

torch's ``DistributedDataParallel`` averages per-rank gradients of per-rank losses. That
equals the single-process gradient only for losses that are means over images; the
pairwise rank loss (and the batch-level statistics of gradient regularisation) are not.
So every rank here gathers the whole global batch's predictions (detached; only its own
slice keeps its graph), computes the loss on the whole batch, backpropagates into its own
slice, and the gradients are summed over ranks: the sum of the slices' contributions is
exactly the single-process gradient, up to float summation order.

Ranks see slices of the same global batches: :class:`GlobalBatchSampler` draws one
permutation from the epoch's seed (the draw of a single-process run) and gives rank r
every N-th image of each batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import fields, replace

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from mpiqa.distributed import Context


class GlobalBatchSampler(Sampler[list[int]]):
    """Batches of a seeded shuffle, as ``DataLoader(shuffle=True, generator=g)`` draws
    them; with ``world_size > 1`` each batch is cut into this rank's slice.

    Args:
        n: dataset size.
        batch_size: the global batch size.
        generator: the epoch's generator (consumed on iteration).
        drop_last: drop a final incomplete batch.
        context: rank and world size.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        generator: torch.Generator,
        drop_last: bool,
        context: Context | None = None,
    ) -> None:
        self.n, self.batch_size, self.generator, self.drop_last = (
            n,
            batch_size,
            generator,
            drop_last,
        )
        self.context = context or Context()

    def _batches(self) -> list[list[int]]:
        order = torch.randperm(self.n, generator=self.generator).tolist()
        batches = [order[i : i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = self.context.rank, self.context.world_size
        for batch in self._batches():
            yield batch[rank::world]

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)


class GradientSync:
    """Gathering of a batch across ranks and summing of gradients; the identity in a
    single process."""

    def __init__(self, context: Context | None = None, device: torch.device | str = "cpu") -> None:
        self.context = context or Context()
        self.device = torch.device(device)  # where collectives' own tensors live (NCCL: GPU)

    @property
    def active(self) -> bool:
        return self.context.active

    def gather(self, local: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's tensor (first dimension may differ between ranks)."""
        size = torch.tensor([local.shape[0]], device=local.device)
        sizes = [torch.zeros_like(size) for _ in range(self.context.world_size)]
        dist.all_gather(sizes, size)
        longest = int(max(s.item() for s in sizes))
        padded = local.new_zeros((longest, *local.shape[1:]))
        padded[: local.shape[0]] = local.detach()
        parts = [torch.zeros_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return [part[: int(s.item())] for part, s in zip(parts, sizes, strict=True)]

    def global_tensor(self, local: torch.Tensor) -> torch.Tensor:
        """The global batch's tensor, rank order; only this rank's slice carries a graph."""
        if not self.active:
            return local
        parts = self.gather(local)
        parts[self.context.rank] = local
        return torch.cat(parts)

    def global_prediction(self, prediction):
        """A prediction dataclass with every tensor field replaced by its global version."""
        if not self.active:
            return prediction
        updates = {
            f.name: self.global_tensor(value)
            for f in fields(prediction)
            if isinstance(value := getattr(prediction, f.name), torch.Tensor)
        }
        return replace(prediction, **updates)

    def global_batch(self, batch: dict) -> dict:
        """Labels of the global batch (``pixels`` stays local: only losses need the rest)."""
        if not self.active:
            return batch
        return {
            key: self.global_tensor(value) if key != "pixels" and isinstance(value, torch.Tensor) else value
            for key, value in batch.items()
        }  # fmt: skip

    def global_count(self, n: int) -> int:
        return int(self._sum_scalar(n, torch.long))

    def sum_gradients(
        self, grads: Sequence[torch.Tensor | None], like: Sequence[torch.Tensor]
    ) -> list[torch.Tensor | None]:
        """Sum per-rank gradients. A gradient missing on every rank stays None; missing on
        some counts as zero (the collective needs the same tensors on every rank)."""
        if not self.active:
            return list(grads)
        present = torch.tensor([g is not None for g in grads], dtype=torch.long, device=self.device)
        dist.all_reduce(present)
        out: list[torch.Tensor | None] = []
        flat = [
            (g if g is not None else torch.zeros_like(p)).contiguous()
            for g, p, any_rank in zip(grads, like, present.tolist(), strict=True)
            if any_rank
        ]
        if flat:
            # one collective for all tensors: prompt gradients are many and small
            buffer = torch.cat([t.reshape(-1) for t in flat])
            dist.all_reduce(buffer)
            summed = iter(buffer.split([t.numel() for t in flat]))
            flat = [chunk.view_as(t) for chunk, t in zip(summed, flat, strict=True)]
        it = iter(flat)
        for any_rank in present.tolist():
            out.append(next(it) if any_rank else None)
        return out

    def sum_param_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """In place: ``param.grad`` becomes the sum over ranks."""
        if not self.active:
            return
        summed = self.sum_gradients([p.grad for p in params], params)
        for param, grad in zip(params, summed, strict=True):
            param.grad = grad

    def sum_float(self, value: float) -> float:
        return float(self._sum_scalar(value, torch.float64))

    def _sum_scalar(self, value: int | float, dtype: torch.dtype) -> int | float:
        if not self.active:
            return value
        tensor = torch.tensor([value], dtype=dtype, device=self.device)
        dist.all_reduce(tensor)
        return tensor.item()
