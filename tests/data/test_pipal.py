"""The PIPAL adapter on a generated miniature of its training part's layout."""

from __future__ import annotations

import pytest

from mpiqa.data.datasets import DatasetFormatError, MissingImagesError, load_dataset
from mpiqa.data.splits import random_split
from tests.data.fixtures import write_image

REFS = ["A0001", "A0002", "A0003", "A0004", "A0005"]


def _pipal(root, nested: bool = True, images: bool = True):
    """Train_Label/<ref>.txt for 5 references x 4 distortions, the images spread over
    Distortion_1..4 (inside Train_Dist/ when ``nested``, as some copies unpack)."""
    labels = root / "Train_Label"
    labels.mkdir(parents=True)
    base = root / "Train_Dist" if nested else root
    for r, ref in enumerate(REFS):
        lines = []
        for d, code in enumerate(["00_00", "00_05", "01_02", "03_11"]):
            name = f"{ref}_{code}.bmp"
            lines.append(f"{name},{1000 + 100 * r + 10 * d:.4f}")
            if images:
                write_image(base / f"Distortion_{d + 1}" / name, value=20 * d)
        (labels / f"{ref}.txt").write_text("\n".join(lines) + "\n")
        write_image(root / "Train_Ref" / f"{ref}.bmp")
    return root


@pytest.mark.parametrize("nested", [True, False])
def test_pipal_records_groups_and_scores(tmp_path, nested):
    data = load_dataset("pipal", _pipal(tmp_path, nested))
    assert len(data) == 20 and data.synthetic and data.higher_better
    first = data.by_key()["A0002_01_02.bmp"]
    assert first.content == "A0002" and first.distortion == "01_02" and first.raw_score == 1120.0
    assert first.path.parent.name == "Distortion_3" and first.path.is_file()
    assert data.scale == (1000.0, 1430.0)
    assert min(r.score for r in data) == 0.0 and max(r.score for r in data) == 1.0
    assert data.distortions == ("00_00", "00_05", "01_02", "03_11")
    # references are the content groups: a split never puts one on two sides
    split = random_split(data, seed=0, test_fraction=0.4, val_fraction=0.0)
    sides = [{data.by_key()[k].content for k in part} for part in (split.train, split.test)]
    assert sides[0] and sides[1] and not sides[0] & sides[1]
    split.check_disjoint(data)


def test_pipal_keys_do_not_depend_on_image_checks(tmp_path):
    root = _pipal(tmp_path)
    checked = [r.key for r in load_dataset("pipal", root)]
    assert checked == [r.key for r in load_dataset("pipal", root, check_images=False)]


def test_pipal_missing_images_and_bad_labels(tmp_path):
    root = _pipal(tmp_path / "a", images=False)
    with pytest.raises(
        MissingImagesError, match=r"20 of 20 images listed in Train_Label/.*A0001_00_00"
    ):
        load_dataset("pipal", root)
    assert len(load_dataset("pipal", root, check_images=False)) == 20

    root = _pipal(tmp_path / "b", images=False)
    (root / "Train_Label" / "A0003.txt").write_text("A0003_00_00.bmp,1000\nA0003_00_01.bmp,high\n")
    with pytest.raises(DatasetFormatError, match=r"A0003\.txt:2: Elo score 'high' is not a number"):
        load_dataset("pipal", root, check_images=False)
    (root / "Train_Label" / "A0003.txt").write_text("A0001_00_00.bmp,1000\n")
    with pytest.raises(DatasetFormatError, match=r"A0003\.txt:1: A0001_00_00\.bmp is listed twice"):
        load_dataset("pipal", root, check_images=False)
    (root / "Train_Label" / "A0003.txt").write_text("cat.jpg,1000\n")
    with pytest.raises(DatasetFormatError, match=r"A0003\.txt:1: 'cat\.jpg' is not a PIPAL name"):
        load_dataset("pipal", root, check_images=False)
    with pytest.raises(FileNotFoundError, match="PIPAL: expected an image folder Train_Label"):
        load_dataset("pipal", tmp_path / "a" / "Train_Ref")
