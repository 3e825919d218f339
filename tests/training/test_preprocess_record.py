"""A trained model's preprocessing (resize, squash, normalisation) travels with its
checkpoint, so evaluation and scoring prepare images as training did."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mpiqa.backbones.factory import build_random_clip
from mpiqa.data.loading import EvalTransform
from mpiqa.data.transforms import IMAGENET_MEAN, IMAGENET_STD, preprocess_pil
from mpiqa.models.mmp_iqa import MMPConfig, MultiModalPromptIQA
from mpiqa.training.checkpoint import backbone_record, load_checkpoint, save_checkpoint
from mpiqa.training.config import TrainConfig
from mpiqa.training.run import preprocess_options


def _image(width=60, height=40) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def test_squash_and_imagenet_statistics_by_hand():
    image = _image()
    got = preprocess_pil(image, 32, resize=36, squash=True, stats="imagenet")[0]
    squashed = np.asarray(image.resize((36, 36), Image.BICUBIC), dtype=np.float32) / 255
    crop = squashed[2:34, 2:34]
    want = (crop - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(got.permute(1, 2, 0).numpy(), want, atol=1e-5)
    with pytest.raises(ValueError, match="stats"):
        preprocess_pil(image, 32, stats="laion")


def test_preprocessing_round_trips_through_a_checkpoint(tmp_path):
    config = TrainConfig()
    config.data.resize, config.data.squash, config.data.stats = 36, True, "imagenet"
    torch.manual_seed(0)
    model = MultiModalPromptIQA(build_random_clip("test-tiny", seed=0), MMPConfig(visual_depth=1))
    model.preprocess_options = preprocess_options(config, 32)
    save_checkpoint(tmp_path / "best", model, backbone_record("test-tiny", "random", 0))
    assert json.loads((tmp_path / "best.json").read_text())["preprocess"] == {
        "resize": 36, "squash": True, "stats": "imagenet",
    }  # fmt: skip
    loaded = load_checkpoint(tmp_path / "best.safetensors")
    assert loaded.preprocess_options == model.preprocess_options
    image = _image()
    scored = loaded.preprocess(image)[0]
    trained = EvalTransform(size=32, resize=36, squash=True, stats="imagenet")(image)
    torch.testing.assert_close(scored, trained)
    # a plain run records nothing and keeps CLIP's pipeline
    assert preprocess_options(TrainConfig(), 32) == {}


def test_unknown_preprocessing_in_a_checkpoint_is_refused(tmp_path):
    torch.manual_seed(0)
    model = MultiModalPromptIQA(build_random_clip("test-tiny", seed=0), MMPConfig(visual_depth=1))
    save_checkpoint(tmp_path / "best", model, backbone_record("test-tiny", "random", 0))
    meta = json.loads((tmp_path / "best.json").read_text())
    meta["preprocess"] = {"stats": "laion"}
    (tmp_path / "best.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="normalisation"):
        load_checkpoint(tmp_path / "best.safetensors")


@pytest.mark.parametrize(
    ("loss", "columns"),
    [
        (None, ("distortion", "distortion_prob", "scene", "scene_prob")),  # no record: all
        ({"distortion": 0.0, "scene": 0.1}, ("scene", "scene_prob")),
        ({"distortion": 0.0, "scene": 0.0}, ()),
    ],
)
def test_only_families_trained_with_labels_get_columns(tmp_path, loss, columns):
    # A family whose prompts trained without labels would print confident guesses
    # (a clean cat as 'blur 0.99'): its column is left out unless asked for.
    torch.manual_seed(0)
    families = ("distortion", "scene")
    model = MultiModalPromptIQA(
        build_random_clip("test-tiny", seed=0), MMPConfig(families=families, visual_depth=1)
    )
    extra = None if loss is None else {"config": {"loss": loss}}
    save_checkpoint(tmp_path / "best", model, backbone_record("test-tiny", "random", 0), extra)
    loaded = load_checkpoint(tmp_path / "best.safetensors")
    assert loaded.extra_columns == columns
    loaded.labelled_families = None  # mpiqa score --describe
    assert len(loaded.extra_columns) == 4


def test_validation_part_that_cannot_rank_is_refused(caplog):
    from mpiqa.data.records import Record
    from mpiqa.training.run import check_validation_part

    same = [Record(f"{i}.png", Path(f"{i}.png"), 3.0, 0.5) for i in range(5)]
    with pytest.raises(ValueError, match="all have the label 0.5"):
        check_validation_part(same)
    varied = [Record(f"{i}.png", Path(f"{i}.png"), i, i / 5) for i in range(5)]
    check_validation_part(varied)
    assert "only 5 images" in caplog.text


def test_malformed_checkpoint_files_are_one_clear_error(tmp_path):
    torch.manual_seed(0)
    model = MultiModalPromptIQA(build_random_clip("test-tiny", seed=0), MMPConfig(visual_depth=1))
    save_checkpoint(tmp_path / "best", model, backbone_record("test-tiny", "random", 0))
    tensors = tmp_path / "best.safetensors"
    good = tensors.read_bytes()
    tensors.write_bytes(b"\xff" * 16)
    with pytest.raises(ValueError, match="best.safetensors: not a readable safetensors file"):
        load_checkpoint(tensors)
    tensors.write_bytes(good)
    (tmp_path / "best.json").write_text("{oops")
    with pytest.raises(ValueError, match="best.json: not a readable JSON file"):
        load_checkpoint(tensors)
    (tmp_path / "best.json").write_text(json.dumps({"format": "mpiqa-checkpoint/1", "mmp": "x"}))
    with pytest.raises(ValueError, match="'backbone' entry is missing"):
        load_checkpoint(tensors)
