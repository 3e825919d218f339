"""Gradient checkpointing gives the same gradients while storing fewer activations."""

from __future__ import annotations

import torch

from mpiqa.backbones import build_random_clip
from mpiqa.models.mmp_iqa import MMPConfig, MultiModalPromptIQA
from mpiqa.training.benchmark import saved_bytes


def _step(checkpointing: bool) -> tuple[dict[str, torch.Tensor], int]:
    torch.manual_seed(0)
    backbone = build_random_clip("test-tiny", seed=1)
    backbone.set_grad_checkpointing(checkpointing)
    model = MultiModalPromptIQA(
        backbone, MMPConfig(visual_depth=2, visual_tokens=2, train_visual_blocks=1)
    ).train()
    pixels = torch.randn(4, 3, model.image_size, model.image_size)
    prediction, saved = saved_bytes(lambda: model.predict(pixels))
    prediction.score.square().mean().backward()
    grads = {n: p.grad.clone() for n, p in model.trainable_parameters() if p.grad is not None}
    return grads, saved


def test_checkpointing_keeps_gradients_and_saves_memory():
    plain, plain_bytes = _step(False)
    ckpt, ckpt_bytes = _step(True)
    assert plain.keys() == ckpt.keys() and any("resblocks" in n for n in plain)
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)
    assert ckpt_bytes < 0.7 * plain_bytes
