"""Structure of the backbone that prompt modules rely on."""

from __future__ import annotations

import pytest
import torch

from mpiqa import tokenize
from mpiqa.backbones import CLIPConfig, build_random_clip, get_config, list_archs


@pytest.fixture(scope="module")
def model():
    return build_random_clip("test-tiny", seed=0)


def test_registry_aliases_and_configs():
    assert {"ViT-B-32", "ViT-B-16", "ViT-L-14", "test-tiny"} <= set(list_archs())
    assert get_config("ViT-B/32") is get_config("ViT-B-32")
    assert get_config("ViT-L/14@336px").vision.image_size == 336
    with pytest.raises(ValueError, match="not divisible"):
        CLIPConfig.from_dict({"embed_dim": 8, "vision": {"width": 10, "heads": 3}, "text": {}})


def test_identity_hook_changes_nothing_and_a_real_hook_does(model):
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = model.encode_image(pixels)
        same = model.visual(pixels, block_hook=lambda i, x: x)
        prompts = torch.randn(1, 3, model.config.vision.width)

        def insert_prompts(i, x):  # VPT-deep: replace the prompt tokens before each block
            body = x if i == 0 else torch.cat([x[:, :1], x[:, 4:]], dim=1)
            return torch.cat([body[:, :1], prompts.expand(len(x), -1, -1), body[:, 1:]], dim=1)

        prompted = model.visual(pixels, block_hook=insert_prompts)
    assert torch.equal(plain, same)
    assert prompted.shape == plain.shape and not torch.allclose(prompted, plain)


def test_text_embeddings_path_equals_forward(model):
    ids = tokenize(["a photo", "Bad photo."])
    with torch.no_grad():
        direct = model.encode_text(ids)
        via_embeddings = model.text.encode_embeddings(model.text.embed(ids), ids.argmax(-1))
    assert torch.equal(direct, via_embeddings)


def test_other_resolutions_interpolate_positions(model):
    with torch.no_grad():
        out = model.encode_image(torch.randn(1, 3, 48, 64))
    assert out.shape == (1, model.config.embed_dim)


def test_logits_shapes(model):
    logits, per_text = model(torch.randn(2, 3, 32, 32), tokenize(["a", "b", "c"]))
    assert logits.shape == (2, 3) and per_text.shape == (3, 2)
