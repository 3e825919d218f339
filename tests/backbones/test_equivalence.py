"""mpiqa's CLIP equals transformers.CLIPModel holding the same weights, in every format.

Random weights are written out as a transformers checkpoint, as OpenAI's TorchScript
archive (traced from OpenAI's own model class), and as open_clip state dicts; each is
loaded by mpiqa and compared with transformers on images, texts and logits.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from transformers import CLIPModel

from mpiqa import load_clip, tokenize
from mpiqa.backbones import CLIPConfig, get_config
from tests.oracles import hf_model_for, hf_to_openai_state_dict, openai_reference_model

# Tracing OpenAI's model warns about data-dependent branches it does not take here.
pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")

TOL = 1e-4
TEXTS = [
    "a photo of a cat.",
    "Good photo.",
    "a blurry, noisy, over-exposed picture of a city at night with many lights",
    "",
]


def _features(output) -> torch.Tensor:
    return getattr(output, "pooler_output", output)


def hf_outputs(model: CLIPModel, pixels: torch.Tensor, ids: torch.Tensor):
    with torch.no_grad():
        image = _features(model.get_image_features(pixel_values=pixels))
        text = _features(model.get_text_features(input_ids=ids))
        logits = model(pixel_values=pixels, input_ids=ids).logits_per_image
    return image, text, logits


def assert_matches(model, pixels, ids, expected) -> None:
    with torch.no_grad():
        image, text = model.encode_image(pixels), model.encode_text(ids)
        logits, _ = model(pixels, ids)
    for name, got, want in zip(
        ("image", "text", "logits"), (image, text, logits), expected, strict=True
    ):
        diff = (got - want).abs().max().item()
        assert diff <= TOL, f"{name} embeddings differ by {diff}"


def _inputs(config: CLIPConfig):
    generator = torch.Generator().manual_seed(1)
    size = config.vision.image_size
    return torch.randn(3, 3, size, size, generator=generator), tokenize(TEXTS)


def _write_openai_jit(state, path, pixels, ids):
    reference = openai_reference_model(state)
    # check_trace=False: the tracer's own re-run check doubles the time of a ViT-B/16;
    # the tests compare the loaded archive's outputs with the reference anyway
    traced = torch.jit.trace_module(
        reference,
        {"encode_image": pixels, "encode_text": ids, "forward": (pixels, ids)},
        check_trace=False,
    )
    traced.save(str(path))


@pytest.fixture(scope="module")
def tiny():
    config = get_config("test-tiny")
    hf = hf_model_for(config)
    pixels, ids = _inputs(config)
    return config, hf, pixels, ids, hf_outputs(hf, pixels, ids)


def test_openai_reference_agrees_with_transformers(tiny):
    """The oracles agree with each other, so the test-side key mapping is right."""
    config, hf, pixels, ids, expected = tiny
    reference = openai_reference_model(hf_to_openai_state_dict(hf.state_dict()))
    assert_matches(reference, pixels, ids, expected)


def test_transformers_directory(tiny, tmp_path):
    config, hf, pixels, ids, expected = tiny
    hf.save_pretrained(tmp_path / "hf")
    model = load_clip(tmp_path / "hf")
    assert model.config.same_shapes(config) and model.config.act == config.act
    assert_matches(model, pixels, ids, expected)


def test_transformers_pytorch_model_bin(tiny, tmp_path):
    config, hf, pixels, ids, expected = tiny
    hf.config.save_pretrained(tmp_path)
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    assert_matches(load_clip(tmp_path / "pytorch_model.bin"), pixels, ids, expected)


def test_openai_torchscript_archive(tiny, tmp_path):
    config, hf, pixels, ids, expected = tiny
    _write_openai_jit(hf_to_openai_state_dict(hf.state_dict()), tmp_path / "tiny.pt", pixels, ids)
    model = load_clip(tmp_path / "tiny.pt")
    assert model.config.name == "test-tiny"  # architecture inferred from shapes
    assert_matches(model, pixels, ids, expected)


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".safetensors"])
def test_open_clip_state_dict(tiny, tmp_path, suffix):
    config, hf, pixels, ids, expected = tiny
    state = hf_to_openai_state_dict(hf.state_dict())
    path = tmp_path / f"open_clip_model{suffix}"
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    assert_matches(load_clip(path), pixels, ids, expected)


def test_open_clip_training_checkpoint(tiny, tmp_path):
    config, hf, pixels, ids, expected = tiny
    state = {f"module.{k}": v for k, v in hf_to_openai_state_dict(hf.state_dict()).items()}
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "epoch_3.pt")
    assert_matches(load_clip(tmp_path / "epoch_3.pt"), pixels, ids, expected)


def test_half_precision_torchscript_loads_as_float32(tiny, tmp_path):
    """OpenAI ships fp16 archives: the weights load into a float32 model unchanged."""
    config, hf, pixels, ids, _ = tiny
    state = {k: v.half().float() for k, v in hf_to_openai_state_dict(hf.state_dict()).items()}
    reference = openai_reference_model(state)  # float32 model of the fp16-rounded weights
    with torch.no_grad():
        expected = (
            reference.encode_image(pixels),
            reference.encode_text(ids),
            reference(pixels, ids)[0],
        )
    traced = torch.jit.trace_module(reference, {"encode_text": ids}, check_trace=False)
    traced.half().save(str(tmp_path / "half.pt"))
    model = load_clip(tmp_path / "half.pt")
    assert model.visual.conv1.weight.dtype == torch.float32
    assert_matches(model, pixels, ids, expected)


def test_gelu_architecture_with_uncommon_heads(tmp_path):
    """Exact GELU and heads that do not follow width // 64: read from config.json, or
    given as the architecture for a state dict (the weights alone cannot tell)."""
    config = get_config("test-small-gelu")
    hf = hf_model_for(config, seed=3)
    pixels, ids = _inputs(config)
    expected = hf_outputs(hf, pixels, ids)
    hf.save_pretrained(tmp_path / "hf")
    assert_matches(load_clip(tmp_path / "hf"), pixels, ids, expected)
    save_file(hf_to_openai_state_dict(hf.state_dict()), tmp_path / "m.safetensors")
    assert_matches(
        load_clip(tmp_path / "m.safetensors", arch="test-small-gelu"), pixels, ids, expected
    )


def test_vit_b16_shapes_in_three_formats(tmp_path):
    config = get_config("ViT-B/16")
    hf = hf_model_for(config, seed=5)
    pixels, ids = _inputs(config)
    pixels, ids = pixels[:2], ids[:2]
    expected = hf_outputs(hf, pixels, ids)
    hf.save_pretrained(tmp_path / "hf")
    assert_matches(load_clip(tmp_path / "hf"), pixels, ids, expected)
    state = hf_to_openai_state_dict(hf.state_dict())
    del hf
    save_file(state, tmp_path / "open_clip_model.safetensors")
    loaded = load_clip(tmp_path / "open_clip_model.safetensors")
    assert loaded.config.name == "ViT-B-16"
    assert_matches(loaded, pixels, ids, expected)
    del loaded
    _write_openai_jit(state, tmp_path / "ViT-B-16.pt", pixels, ids)
    assert_matches(load_clip(tmp_path / "ViT-B-16.pt"), pixels, ids, expected)
