"""The shipped default model: loads offline from the package and ranks obvious damage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpiqa.backbones import load_clip
from mpiqa.backbones.pretrained import get_pretrained, packaged_path, sha256_of
from mpiqa.models import create_model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def model():
    return create_model("mpiqa-tiny")


def test_packaged_files_are_registered_and_small():
    entry = get_pretrained("mpiqa-tiny")
    assert entry is not None and entry.packaged and entry.tag == "mpiqa"
    backbone = packaged_path(entry.file)
    assert sha256_of(backbone) == entry.sha256
    total = sum(f.stat().st_size for f in backbone.parent.glob("mpiqa-tiny*"))
    assert total <= 50 * 2**20
    meta = json.loads(packaged_path("mpiqa-tiny.json").read_text())
    # no path of the machine that trained it
    assert meta["backbone"] == {
        "arch": "mpiqa-tiny",
        "weights": None,
        "seed": 0,
        "sha256": entry.sha256,
    }


def test_backbone_loads_by_name_offline():
    # the test session sets MPIQA_OFFLINE=1 and an empty cache
    assert load_clip("mpiqa-tiny").config.vision.stem == "efficientnet-lite0"


def test_scores_examples_in_range(model):
    paths = sorted(str(p) for p in EXAMPLES.glob("*.jpg"))
    scores = model.score(paths)
    assert scores.shape == (len(paths),)
    assert bool(((scores >= 0) & (scores <= 1)).all())


def test_clean_photo_beats_its_damaged_versions(model):
    names = ["chelsea.jpg", "chelsea_blur.jpg", "chelsea_noise.jpg", "chelsea_jpeg_q8.jpg"]
    clean, *damaged = model.score([str(EXAMPLES / n) for n in names]).tolist()
    assert all(clean > d for d in damaged), (clean, damaged)


def test_refuses_other_backbones():
    with pytest.raises(ValueError, match="ships its own weights"):
        create_model("mpiqa-tiny", backbone="ViT-B-32")
