"""Text and visual prompts: they change the embeddings, and start where CLIP is."""

from __future__ import annotations

import pytest
import torch

from mpiqa import tokenize
from mpiqa.backbones import build_random_clip
from mpiqa.models.mmp_iqa import MMPConfig, MultiModalPromptIQA
from mpiqa.prompts import TextPromptLearner, VisualPromptLearner


@pytest.fixture(scope="module")
def clip():
    return build_random_clip("test-tiny", seed=0)


def test_context_initialised_from_a_phrase_reproduces_the_plain_prompt(clip):
    """CoOp's starting point is the hand-written prompt: same features, even though the
    learner cuts the sequence after the end-of-text token."""
    classes = ["good quality.", "bad quality."]
    learner = TextPromptLearner(clip, classes, ctx_init="a photo of a")
    assert learner.n_ctx == 4
    with torch.no_grad():
        embeddings, eot = learner()
        ours = clip.text.encode_embeddings(embeddings, eot)
        plain = clip.encode_text(tokenize([f"a photo of a {c}" for c in classes]))
    assert embeddings.shape[1] < 77
    assert torch.allclose(ours, plain, atol=1e-5)


def test_text_context_changes_the_features(clip):
    learner = TextPromptLearner(clip, ["good quality.", "bad quality."], n_ctx=4)
    with torch.no_grad():
        before = clip.text.encode_embeddings(*learner())
        learner.ctx.add_(torch.randn_like(learner.ctx))
        after = clip.text.encode_embeddings(*learner())
    assert not torch.allclose(before, after)
    specific = TextPromptLearner(clip, ["a", "b", "c"], n_ctx=2, class_specific=True)
    assert specific.ctx.shape == (3, 2, clip.config.text.width)


def test_visual_prompts_keep_the_token_count_and_change_the_embedding(clip):
    prompts = VisualPromptLearner(clip.config.vision.width, n_tokens=3, depth=2, patch_size=8)
    lengths = []

    def spy(i, x):
        out = hook(i, x)
        lengths.append(out.shape[1])
        return out

    hook = prompts.hook()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = clip.encode_image(pixels)
        prompted = clip.visual(pixels, block_hook=spy)
    patches = (32 // 8) ** 2
    assert lengths == [1 + 3 + patches] * 2
    assert not torch.allclose(plain, prompted)


def test_only_prompts_receive_gradients(clip):
    model = MultiModalPromptIQA(clip, MMPConfig(visual_depth=2, visual_tokens=2))
    names = [n for n, _ in model.trainable_parameters()]
    assert names == [
        "text_prompts.scene.ctx",
        "text_prompts.distortion.ctx",
        "visual_prompts.prompts",
    ]
    prediction = model.predict(torch.randn(2, 3, 32, 32))
    (prediction.score.sum() + prediction.scene[:, 0].sum()).backward()
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for _, p in model.trainable_parameters()
    )
    assert all(p.grad is None and not p.requires_grad for p in clip.parameters())


def test_last_blocks_train_when_asked():
    clip = build_random_clip("test-tiny", seed=1)
    model = MultiModalPromptIQA(
        clip,
        MMPConfig(
            families=("quality",), visual_depth=1, train_visual_blocks=1, train_text_blocks=1
        ),
    )
    trainable = {n for n, _ in model.trainable_parameters()}
    assert "backbone.visual.transformer.resblocks.1.attn.in_proj_weight" in trainable
    assert "backbone.visual.transformer.resblocks.0.attn.in_proj_weight" not in trainable
    assert {"backbone.visual.ln_post.weight", "backbone.text.ln_final.weight"} <= trainable
    assert "backbone.visual.conv1.weight" not in trainable


def test_prediction_is_a_distribution_over_quality_scenes_and_distortions(clip):
    model = MultiModalPromptIQA(clip, MMPConfig(visual_depth=2)).eval()
    with torch.no_grad():
        p = model.predict(torch.randn(3, 3, 32, 32))
    assert torch.allclose(p.quality.sum(1), torch.ones(3), atol=1e-5)
    assert torch.allclose(p.scene.sum(1), torch.ones(3), atol=1e-5)
    assert p.distortion.shape == (3, 11)
    assert torch.allclose(p.score, p.quality @ torch.linspace(0, 1, 5), atol=1e-6)
    two = MultiModalPromptIQA(
        clip, MMPConfig(families=("quality",), quality_levels=2, visual_depth=0)
    ).eval()
    with torch.no_grad():
        q = two.predict(torch.randn(3, 3, 32, 32))
    assert torch.allclose(q.score, q.quality[:, 1])  # p(high)


def test_maple_coupling_drives_the_visual_prompts(clip):
    model = MultiModalPromptIQA(
        clip, MMPConfig(families=("quality",), coupling="maple", visual_depth=2)
    )
    names = {n for n, _ in model.trainable_parameters()}
    assert "coupling.maps.0.weight" in names and "visual_prompts.prompts" not in names
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = model.encode_image(pixels)
        model.text_prompts["quality"].ctx.add_(1.0)
        after = model.encode_image(pixels)
    assert not torch.allclose(before, after)


def test_eval_cache_follows_parameter_updates(clip):
    model = MultiModalPromptIQA(clip, MMPConfig(families=("quality",), visual_depth=0)).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        first = model(pixels)
        model.text_prompts["quality"].ctx.mul_(-3)
        second = model(pixels)
    assert not torch.allclose(first, second)
