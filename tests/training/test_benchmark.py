"""The training-step benchmark reports what it claims: frozen weights get no gradient,
checkpointing trims the saved activations, more trained blocks mean more gradients."""

from __future__ import annotations

from mpiqa.training.benchmark import meta_step, prompt_step, table
from mpiqa.training.meta import MetaConfig


def test_prompt_steps_and_meta_step():
    prompts = prompt_step("test-tiny", 4, warmup=0, iters=1)
    ckpt = prompt_step("test-tiny", 4, checkpointing=True, warmup=0, iters=1)
    blocks = prompt_step("test-tiny", 4, blocks=1, warmup=0, iters=1)
    for r in (prompts, ckpt, blocks):
        assert r.frozen_with_grad == 0 and r.seconds_per_step > 0
    assert ckpt.activations_mb < 0.5 * prompts.activations_mb
    assert blocks.trainable_params > prompts.trainable_params
    assert blocks.gradients_mb > prompts.gradients_mb
    meta = meta_step(
        "test-tiny", MetaConfig(inner_steps=1, n_support=2, n_query=2, tasks_per_batch=2)
    )
    assert meta.images_per_s > 0
    text = table([prompts, ckpt, blocks, meta])
    assert "+ checkpointing" in text and "meta step (reptile, 2 tasks x 1 inner steps" in text
