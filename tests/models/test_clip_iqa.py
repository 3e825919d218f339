"""Zero-shot CLIP-IQA: score semantics and batch consistency."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import mpiqa
from mpiqa.backbones import build_random_clip
from mpiqa.data.images import ImageDecodeError
from mpiqa.models import CLIPIQA


@pytest.fixture(scope="module")
def model():
    return mpiqa.create_model("clip-iqa", weights="random", backbone="test-tiny")


@pytest.fixture
def image_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(64, 48), (33, 90), (200, 120), (5, 5)]):
        path = tmp_path / f"im{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_interface(model):
    assert model.lower_better is False and model.score_range == (0.0, 1.0)
    assert set(mpiqa.list_models()) >= {"clip-iqa", "clip-iqa-ensemble"}


@pytest.mark.parametrize("crop", ["center", "multi", "full"])
def test_batch_equals_one_at_a_time(image_files, crop):
    model = mpiqa.create_model("clip-iqa", weights="random", backbone="test-tiny", crop=crop)
    batch = model.score(image_files)
    single = torch.cat([model.score(p) for p in image_files])
    assert batch.shape == (len(image_files),)
    assert (batch - single).abs().max() <= 1e-5
    assert ((batch >= 0) & (batch <= 1)).all()


def test_paths_pil_and_tensor_inputs_agree(model, image_files):
    images = [Image.open(p).convert("RGB") for p in image_files]
    assert torch.allclose(model.score(image_files), model.score(images), atol=1e-6)
    pixels = torch.rand(4, 3, 40, 40)
    batch = model.score(pixels, batch_size=3)
    assert (batch - torch.cat([model.score(x) for x in pixels])).abs().max() <= 1e-5


def test_swapped_prompts_give_the_complement(image_files):
    backbone = build_random_clip("test-tiny", seed=2)
    forward = CLIPIQA(backbone, pairs=[("Good photo.", "Bad photo.")])
    reverse = CLIPIQA(backbone, pairs=[("Bad photo.", "Good photo.")])
    assert torch.allclose(
        forward.score(image_files) + reverse.score(image_files), torch.ones(4), atol=1e-6
    )


def test_ensemble_averages_its_pairs(image_files):
    backbone = build_random_clip("test-tiny", seed=2)
    pairs = [("Good photo.", "Bad photo."), ("Sharp photo.", "Blurry photo.")]
    mean = (
        CLIPIQA(backbone, pairs=pairs[:1]).score(image_files)
        + CLIPIQA(backbone, pairs=pairs[1:]).score(image_files)
    ) / 2
    assert torch.allclose(CLIPIQA(backbone, pairs=pairs).score(image_files), mean, atol=1e-6)


def test_bad_tensor_input(model):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.score(torch.full((1, 3, 8, 8), 2.0))
    with pytest.raises(ValueError, match="shape"):
        model.score(torch.rand(2, 4, 8, 8))
    with pytest.raises(ValueError, match="float"):
        model.score(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    nan = torch.rand(1, 3, 8, 8)
    nan[0, 1, 2, 3] = float("nan")  # passed the [0, 1] check and scored NaN
    with pytest.raises(ValueError, match="finite"):
        model.score(nan)
    with pytest.raises(ValueError, match="must have pixels"):  # was ZeroDivisionError
        model.score(torch.rand(1, 3, 0, 8))
    with pytest.raises(ValueError, match=r"inputs\[1\]: an image must have pixels"):
        model.score([Image.new("RGB", (8, 8)), Image.new("RGB", (8, 0))])


def test_sequences_of_the_wrong_items_are_named_and_empty_ones_score_nothing(model, image_files):
    import numpy as np

    # checked before anything is scored, whichever way the model is called
    for call in (model, model.score, model.describe):
        with pytest.raises(TypeError, match=r"inputs\[1\]: .* numpy\.ndarray"):
            call([image_files[0], np.zeros((8, 8, 3), np.uint8)])
    assert model([]).shape == (0,) and model.score(()).shape == (0,) and model.describe([]) == []


def test_bad_file_raises_naming_it(model, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"nope")
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        model.score([tmp_path / "broken.jpg"])


def test_registry_errors_and_checkpoint_weights(tmp_path, image_files):
    with pytest.raises(KeyError, match="unknown model"):
        mpiqa.create_model("no-such-model")
    backbone = build_random_clip("test-tiny", seed=9)
    torch.save(
        {k.removeprefix("text."): v for k, v in backbone.state_dict().items()}, tmp_path / "w.pt"
    )
    from_file = mpiqa.create_model("clip-iqa", weights=tmp_path / "w.pt")
    from_seed = mpiqa.create_model("clip-iqa", weights="random", backbone="test-tiny", seed=9)
    assert torch.allclose(from_file.score(image_files), from_seed.score(image_files), atol=1e-6)


def test_pyiqa_names_and_automatic_device():
    model = mpiqa.create_model("clipiqa", weights="random", backbone="test-tiny", device="auto")
    assert type(model).__name__ == "CLIPIQA"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert model.device.type == expected
    # one line naming the choices (before: torch's list of every backend it knows)
    with pytest.raises(ValueError, match=r"^unknown device 'gpu0': mpiqa runs on cpu, cuda"):
        mpiqa.create_model("clip-iqa", weights="random", backbone="test-tiny", device="gpu0")


def test_models_are_callable_on_files_and_describe_them(model, image_files):
    # pyiqa's habit: metric(path) / metric([paths]); tensors keep the module's meaning
    assert torch.equal(model(image_files), model.score(image_files))
    assert torch.equal(model(str(image_files[0])), model.score(image_files[0]))
    pixels = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(pixels), model.forward(pixels))
    rows = model.describe(image_files)
    assert [r["score"] for r in rows] == pytest.approx(model.score(image_files).tolist())
    assert all(set(r) == {"score"} for r in rows)  # CLIP-IQA has no extra columns


@pytest.mark.parametrize("crop", ["center", "multi", "full"])
def test_differentiable_score_matches_score_and_finite_differences(crop):
    model = mpiqa.create_model("clip-iqa", weights="random", backbone="test-tiny", crop=crop)
    pixels = torch.rand(2, 3, 48, 40, generator=torch.Generator().manual_seed(0))
    pixels = (pixels * 0.8 + 0.1).requires_grad_(True)  # a step stays inside [0, 1]
    scores = model.differentiable_score(pixels)
    assert torch.allclose(scores.detach(), model.score(pixels.detach()), atol=1e-6)
    (grad,) = torch.autograd.grad(scores.sum(), pixels)
    direction = grad / grad.norm()
    h = 0.02
    with torch.no_grad():
        change = model.score(pixels + h * direction) - model.score(pixels - h * direction)
    predicted = 2 * h * (grad * direction).sum()
    assert predicted > 0 and change.sum() == pytest.approx(predicted.item(), rel=0.05)
