"""Training-step cost: time and memory of one optimisation step in the set-ups users
choose between (prompts only, prompts + last K image blocks, each with and without
gradient checkpointing) and of one meta-pre-training step.

Memory is measured per step, not per process, so set-ups can share one run:
- ``activations_mb``: bytes autograd saves for backward (the part checkpointing trims);
- ``gradients_mb``: bytes of ``.grad`` after the step (frozen weights hold none);
- ``cuda_peak_mb``: on a GPU, the allocator's peak during the step.

A benchmark measures speed; it is not part of the test suite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from mpiqa.backbones.factory import build_random_clip
from mpiqa.benchmarking import median_time
from mpiqa.models.mmp_iqa import MMPConfig, MultiModalPromptIQA
from mpiqa.training.losses import LossWeights, total_loss
from mpiqa.training.meta import MetaConfig, MetaTrainer, Task, TaskSource


@dataclass
class StepResult:
    setup: str
    batch_size: int
    seconds_per_step: float
    images_per_s: float
    trainable_params: int
    activations_mb: float
    gradients_mb: float
    frozen_with_grad: int  # frozen tensors that got a .grad: must be 0
    cuda_peak_mb: float | None


def saved_bytes(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Run ``fn`` (a forward pass) and count the bytes autograd saves for backward."""
    saved = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, saved


def _model(arch: str, device: str, blocks: int, checkpointing: bool) -> MultiModalPromptIQA:
    backbone = build_random_clip(arch, seed=0)
    backbone.set_grad_checkpointing(checkpointing)
    config = MMPConfig(train_visual_blocks=blocks)
    return MultiModalPromptIQA(backbone, config).to(device).train()


def _batch(model: MultiModalPromptIQA, n: int, generator: torch.Generator) -> dict:
    size = model.image_size
    return {
        "pixels": torch.randn(n, 3, size, size, generator=generator).to(model.device),
        "score": torch.rand(n, generator=generator),
    }


def prompt_step(
    arch: str,
    batch_size: int,
    blocks: int = 0,
    checkpointing: bool = False,
    device: str = "cpu",
    warmup: int = 1,
    iters: int = 3,
) -> StepResult:
    """One AdamW step of prompt training (plus the last ``blocks`` image blocks)."""
    model = _model(arch, device, blocks, checkpointing)
    params = [p for _, p in model.trainable_parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    batch = _batch(model, batch_size, torch.Generator().manual_seed(0))
    weights = LossWeights(quality=1.0, rank=0.5, scene=0.0, distortion=0.0)
    dev = torch.device(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = total_loss(model.predict(batch["pixels"]), batch, weights)
        loss.backward()
        optimizer.step()

    seconds = median_time(step, dev, warmup, iters)
    optimizer.zero_grad(set_to_none=True)
    prediction, saved = saved_bytes(lambda: model.predict(batch["pixels"]))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    total_loss(prediction, batch, weights)[0].backward()
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    trainable = {id(p) for p in params}
    grads = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
    frozen_with_grad = sum(
        1 for p in model.parameters() if id(p) not in trainable and p.grad is not None
    )
    setup = "prompts" + (f" + last {blocks} image blocks" if blocks else "")
    setup += " + checkpointing" if checkpointing else ""
    return StepResult(
        setup, batch_size, seconds, batch_size / seconds, sum(p.numel() for p in params),
        saved / 2**20, grads / 2**20, frozen_with_grad, peak,
    )  # fmt: skip


class _RandomTasks(TaskSource):
    def __init__(self, n_types: int) -> None:
        self.types = [f"type{i}" for i in range(n_types)]

    def tasks(self, types, epoch, config, size):
        generator = torch.Generator().manual_seed(epoch)

        def part(n: int) -> dict:
            return {
                "pixels": torch.randn(n, 3, size, size, generator=generator),
                "score": torch.rand(n, generator=generator),
            }

        return [Task(t, part(config.n_support), part(config.n_query)) for t in types]


def meta_step(
    arch: str, config: MetaConfig | None = None, device: str = "cpu", iters: int = 1
) -> StepResult:
    """One outer step of meta-pre-training (``tasks_per_batch`` tasks, each adapted for
    ``inner_steps`` steps on ``n_support`` images and scored on ``n_query``)."""
    config = config or MetaConfig()
    model = _model(arch, device, 0, False)
    source = _RandomTasks(config.tasks_per_batch + config.n_val_types)
    trainer = MetaTrainer(model, source, config, "unused", backbone_info={})
    tasks = source.tasks(trainer.train_types[: config.tasks_per_batch], 0, config, model.image_size)
    seconds = median_time(lambda: trainer.meta_step(tasks), torch.device(device), 0, iters)
    images = config.tasks_per_batch * (config.inner_steps * config.n_support + config.n_query)
    params = trainer.params
    return StepResult(
        f"meta step ({config.algorithm}, {config.tasks_per_batch} tasks x {config.inner_steps} "
        f"inner steps, {config.n_support} support / {config.n_query} query)",
        config.n_support, seconds, images / seconds, sum(p.numel() for p in params),
        float("nan"), sum(p.numel() * p.element_size() for p in params) / 2**20, 0, None,
    )  # fmt: skip


def table(results: list[StepResult]) -> str:
    rows = [
        "| set-up | batch | s/step | images/s | trainable params | saved activations "
        "| gradients | frozen tensors with .grad |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        acts = "n/a" if r.activations_mb != r.activations_mb else f"{r.activations_mb:.0f} MB"
        rows.append(
            f"| {r.setup} | {r.batch_size} | {r.seconds_per_step:.3f} | {r.images_per_s:.1f} "
            f"| {r.trainable_params:,} | {acts} | {r.gradients_mb:.2f} MB | {r.frozen_with_grad} |"
        )
    return "\n".join(rows)


def to_dicts(results: list[StepResult]) -> list[dict]:
    return [asdict(r) for r in results]
