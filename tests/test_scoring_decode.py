"""Reduced JPEG decoding in scoring: used only where the model resizes far below it, and
within a small tolerance of full decoding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from mpiqa.models.registry import create_model
from mpiqa.scoring import score_files

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.jpg"))


@pytest.fixture(scope="module")
def large_photos(tmp_path_factory) -> list[str]:
    """The example photos enlarged 4x (1,200 to 2,560 px) as JPEGs: sizes where
    reduced decoding applies."""
    folder = tmp_path_factory.mktemp("large")
    paths = []
    for source in EXAMPLES[:4]:
        image = Image.open(source).convert("RGB")
        image = image.resize((image.width * 4, image.height * 4), Image.BICUBIC)
        image.save(folder / source.name, quality=92)
        paths.append(str(folder / source.name))
    return paths


def _scores(model, paths, reduced: bool) -> torch.Tensor:
    return torch.tensor(
        [r.score for r in score_files(model, paths, workers=0, reduced_decode=reduced)]
    )


def test_reduced_decoding_stays_close_to_full_decoding(large_photos):
    model = create_model("mpiqa-tiny").for_inference()
    assert model.decode_min_side == 448  # twice its 224 target
    full, reduced = _scores(model, large_photos, False), _scores(model, large_photos, True)
    assert not torch.equal(full, reduced)  # decoded at 1/2 or 1/4
    assert (full - reduced).abs().max() < 0.05
    # the Python API decodes files as scoring does
    assert torch.allclose(model.score(large_photos), reduced, atol=1e-6)
    # photos whose shorter side is under twice the target decode at full size
    small = [str(p) for p in EXAMPLES]
    assert torch.equal(_scores(model, small, True), _scores(model, small, False))


def test_native_resolution_modes_decode_at_full_size(large_photos):
    model = create_model("mpiqa-tiny", crop="multi").for_inference()
    assert model.decode_min_side is None
    assert torch.equal(
        _scores(model, large_photos[:2], True), _scores(model, large_photos[:2], False)
    )
