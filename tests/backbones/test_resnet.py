"""CLIP's ResNet towers equal OpenAI's reference ``model.py`` holding the same weights,
read from each file format: open_clip state dicts (safetensors and torch pickles) and
OpenAI's TorchScript archives (traced from OpenAI's own class, stored in float16 as
OpenAI's files are). Also CLIP-IQA's published mode on them."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from mpiqa import load_clip, tokenize
from mpiqa.backbones import get_config
from mpiqa.backbones.pretrained import get_pretrained
from mpiqa.models.clip_iqa import CLIPIQA
from tests.oracles import openai_model_module

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")

TOL = 1e-4
TEXTS = ["Good photo.", "Bad photo.", "a photo of a cat on a sofa"]


def openai_resnet_clip(arch: str, seed: int = 0) -> torch.nn.Module:
    """OpenAI's CLIP class with a ResNet tower of ``arch``'s shapes, every weight and
    BatchNorm statistic random (OpenAI's init zeroes each block's last norm, which would
    leave the blocks untested), rounded to float16 as OpenAI ships its weights."""
    c = get_config(arch)
    torch.manual_seed(seed)
    model = openai_model_module().CLIP(
        c.embed_dim, c.vision.image_size, c.vision.resnet_layers, c.vision.width, None,
        c.text.context_length, c.text.vocab_size, c.text.width, c.text.heads, c.text.layers,
    )  # fmt: skip
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("visual."):
                param.add_(torch.randn_like(param) * 0.05)
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(torch.randn_like(buffer) * 0.1)
            elif name.endswith("running_var"):
                buffer.copy_(torch.rand_like(buffer) + 0.5)
    return model.half().float().eval()


def _inputs(arch: str, n: int = 2):
    size = get_config(arch).vision.image_size
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1)), tokenize(
        TEXTS
    )


def _outputs(model, pixels, ids):
    with torch.no_grad():
        return model.encode_image(pixels), model.encode_text(ids), model(pixels, ids)[0]


def assert_matches(model, pixels, ids, expected) -> None:
    for name, got, want in zip(
        ("image", "text", "logits"), _outputs(model, pixels, ids), expected, strict=True
    ):
        diff = (got - want).abs().max().item()
        assert diff <= TOL * max(1.0, want.abs().max().item()), (
            f"{name} embeddings differ by {diff}"
        )


def _jit(reference, pixels, ids, path) -> None:
    traced = torch.jit.trace_module(  # a copy: the traced module shares its tensors
        copy.deepcopy(reference),
        {"encode_image": pixels, "encode_text": ids, "forward": (pixels, ids)},
        check_trace=False,  # the tests compare the loaded archive with the reference
    )
    traced.half().save(str(path))  # float16, as OpenAI's archives


@pytest.fixture(scope="module")
def tiny():
    reference = openai_resnet_clip("test-resnet")
    pixels, ids = _inputs("test-resnet", 3)
    return reference, pixels, ids, _outputs(reference, pixels, ids)


def test_open_clip_state_dicts(tiny, tmp_path):
    reference, pixels, ids, expected = tiny
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    save_file(state, str(tmp_path / "open_clip_model.safetensors"))
    loaded = load_clip(tmp_path / "open_clip_model.safetensors")
    assert loaded.config.vision.resnet_layers == (1, 1, 1, 1)
    assert loaded.config.name == "test-resnet"  # recognised by its shapes
    assert_matches(loaded, pixels, ids, expected)
    # a training checkpoint of open_clip: wrapped, with DataParallel's prefix, no step counters
    wrapped = {f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": wrapped, "epoch": 3}, tmp_path / "epoch_3.pt")
    assert_matches(load_clip(tmp_path / "epoch_3.pt"), pixels, ids, expected)


def test_openai_torchscript_archive(tiny, tmp_path):
    reference, pixels, ids, expected = tiny
    _jit(reference, pixels, ids, tmp_path / "RN-tiny.pt")
    loaded = load_clip(tmp_path / "RN-tiny.pt")
    assert loaded.visual.conv1.weight.dtype == torch.float32
    assert_matches(loaded, pixels, ids, expected)


def test_rn50_shapes_in_both_formats(tmp_path):
    reference = openai_resnet_clip("RN50", seed=2)
    pixels, ids = _inputs("RN50")
    expected = _outputs(reference, pixels, ids)
    save_file(
        {k: v.contiguous() for k, v in reference.state_dict().items()},
        str(tmp_path / "m.safetensors"),
    )
    loaded = load_clip(tmp_path / "m.safetensors")
    assert loaded.config.name == "RN50"
    assert_matches(loaded, pixels, ids, expected)
    del loaded
    _jit(reference, pixels, ids, tmp_path / "RN50.pt")
    assert_matches(load_clip(tmp_path / "RN50.pt", arch="RN50"), pixels, ids, expected)


def test_resnet_family_is_registered_with_openai_hashes():
    for arch, size in (
        ("RN50", 224),
        ("RN101", 224),
        ("RN50x4", 288),
        ("RN50x16", 384),
        ("RN50x64", 448),
    ):
        assert get_config(arch).vision.image_size == size
        entry = get_pretrained(arch)
        assert entry is not None and len(entry.sha256) == 64 and entry.sha256 in entry.url


def _ours(reference, folder) -> torch.nn.Module:
    """mpiqa's CLIP holding ``reference``'s weights (through an open_clip file)."""
    path = folder / "w.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    return load_clip(path)


def _direct_clip_iqa(backbone, image: torch.Tensor) -> torch.Tensor:
    """CLIP-IQA as its paper computes it on a ResNet, written out here with torch's own
    multi-head attention: the attention pool without positional embedding, then the
    softmax of the "Good photo." / "Bad photo." logits."""
    visual = backbone.visual
    pool = visual.attnpool
    with torch.no_grad():
        x = visual.features(image)  # (1, C, h, w)
        x = x.flatten(2).permute(2, 0, 1)  # (hw, 1, C)
        x = torch.cat([x.mean(dim=0, keepdim=True), x])
        x, _ = F.multi_head_attention_forward(
            query=x[:1], key=x, value=x, embed_dim_to_check=x.shape[-1],
            num_heads=pool.heads, q_proj_weight=pool.q_proj.weight,
            k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight,
            in_proj_weight=None,
            in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=pool.c_proj.weight, out_proj_bias=pool.c_proj.bias,
            use_separate_proj_weight=True, training=False, need_weights=False,
        )  # fmt: skip
        image_features = F.normalize(x[0], dim=-1)
        text = F.normalize(backbone.encode_text(tokenize(["Good photo.", "Bad photo."])), dim=-1)
        logits = backbone.logit_scale.exp() * image_features @ text.t()
        return logits.softmax(dim=-1)[:, 0]


def test_clip_iqa_on_a_resnet_scores_whole_images_without_positions(tiny, tmp_path):
    from PIL import Image

    reference, *_ = tiny
    backbone = _ours(reference, tmp_path)
    model = CLIPIQA(backbone)
    assert model.crop == "full" and backbone.visual.positional == "drop"
    rng = torch.Generator().manual_seed(3)
    pixels = (torch.rand(3, 100, 164, generator=rng) * 255).byte()
    image = Image.fromarray(pixels.permute(1, 2, 0).numpy())
    crops = model.preprocess(image)
    assert crops.shape == (1, 3, 96, 160)  # its own size (cut to whole cells), not 64 x 64
    expected = _direct_clip_iqa(backbone, crops)
    assert torch.allclose(model(crops), expected, atol=1e-6)
    assert torch.allclose(model.score(image), expected, atol=1e-6)
    # keeping the (resized) positional embedding is a different model
    interpolating = CLIPIQA(_ours(reference, tmp_path), positional="interpolate")
    assert not torch.allclose(interpolating(crops), expected, atol=1e-4)
    with pytest.raises(ValueError, match="for ResNet backbones"):
        CLIPIQA(load_clip("random", arch="test-tiny"), positional="drop")


def test_clip_iqa_at_the_trained_grid_equals_openai_with_its_positions(tiny, tmp_path):
    """With centre crops the attention pool keeps its positional embedding, as OpenAI's."""
    reference, pixels, _, _ = tiny
    backbone = _ours(reference, tmp_path)
    model = CLIPIQA(backbone, crop="center")
    assert backbone.visual.positional == "interpolate"
    with torch.no_grad():
        image = F.normalize(reference.encode_image(pixels), dim=-1)
        text = F.normalize(reference.encode_text(tokenize(["Good photo.", "Bad photo."])), dim=-1)
        want = (reference.logit_scale.exp() * image @ text.t()).softmax(dim=-1)[:, 0]
    assert torch.allclose(model(pixels), want, atol=1e-5)


def test_prompt_models_refuse_a_resnet():
    from mpiqa.models.mmp_iqa import MultiModalPromptIQA

    with pytest.raises(ValueError, match="Vision Transformer"):
        MultiModalPromptIQA(load_clip("random", arch="test-resnet"))
