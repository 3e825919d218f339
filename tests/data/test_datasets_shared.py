"""Adapters on the real label files in ../shared/data (skipped where it is absent)."""

from __future__ import annotations

import pytest

from mpiqa.data.datasets import load_dataset


def test_biq2021_loads_the_5000_shared_images(shared_data):
    data = load_dataset("biq2021", shared_data / "biq2021")
    assert len(data) == 5000
    assert all(r.path.is_file() for r in data.records[:50])
    assert {r.group for r in data} == {"train"}
    assert all(0.0 <= r.score <= 1.0 and r.score == r.raw_score for r in data)
    sources = [r.source for r in data]
    assert (sources.count("ss01"), sources.count("ss02"), sources.count("ss03")) == (819, 823, 3358)


def test_koniq_official_sets(shared_data):
    data = load_dataset("koniq10k", shared_data / "labels/KonIQ-10k", check_images=False)
    assert len(data) == 10073
    groups = [r.group for r in data]
    assert (groups.count("training"), groups.count("validation"), groups.count("test")) == (
        7058,
        1000,
        2015,
    )
    best = max(data, key=lambda r: r.raw_score)
    assert best.raw_score == pytest.approx(88.38888888889) and best.score == max(
        r.score for r in data
    )


def test_tid2013_rows_names_and_distortions(shared_data):
    data = load_dataset("tid2013", shared_data / "labels/TID2013", check_images=False)
    assert len(data) == 3000
    assert len({r.content for r in data}) == 25 and len({r.distortion for r in data}) == 24
    assert {r.level for r in data} == {1, 2, 3, 4, 5}
    assert all(0 <= r.score <= 1 for r in data)  # MOS 0.24..7.21 on the 0..9 scale


def test_livec_test_images_and_training_images(shared_data):
    data = load_dataset("livec", shared_data / "labels/LIVEC", check_images=False)
    assert len(data) == 1162 and not any("trainingImages" in r.key for r in data)
    everything = load_dataset(
        "livec", shared_data / "labels/LIVEC", check_images=False, include_training=True
    )
    assert len(everything) == 1169 and everything[0].key == "Images/trainingImages/t1.bmp"
    assert everything[-1].key == "Images/1164.bmp"


def test_csiq_dmos_is_flipped(shared_data):
    data = load_dataset("csiq", shared_data / "labels/CSIQ", check_images=False)
    assert len(data) == 866 and len({r.content for r in data}) == 30
    assert len({r.distortion for r in data}) == 6
    for record in data:
        assert record.score == pytest.approx(1 - record.raw_score)  # DMOS: lower is better
