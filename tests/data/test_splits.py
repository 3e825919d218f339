"""Splits keep content apart, carve validation from training, and round-trip as JSON."""

from __future__ import annotations

import pytest

from mpiqa.data.datasets import load_dataset
from mpiqa.data.records import IQADataset, Record
from mpiqa.data.splits import Split, few_shot, official_split, random_split, rounds


def synthetic(n_refs=20, per_ref=10) -> IQADataset:
    records = [
        Record(
            f"I{r:02d}_{k:02d}.png",
            None,
            1.0,
            0.5,
            content=f"I{r:02d}",
            distortion="blur",
            level=k % 5 + 1,
        )
        for r in range(n_refs)
        for k in range(per_ref)
    ]
    return IQADataset("toy", None, records, synthetic=True)


def test_split_by_content_is_disjoint_and_complete():
    data = synthetic()
    split = random_split(data, seed=3)
    split.check_disjoint(data)
    assert sorted(split.train + split.val + split.test) == sorted(r.key for r in data)
    assert len(split.test) == 4 * 10  # 20 % of 20 references, all their images
    assert split.notes["by_content"] is True


def test_check_disjoint_catches_a_shared_reference():
    data = synthetic()
    split = random_split(data, seed=0)
    moved = Split(split.dataset, split.train + [split.test[0]], split.val, split.test[1:], 0, "x")
    with pytest.raises(ValueError, match="content"):
        moved.check_disjoint(data)


def test_seeds_give_different_reproducible_rounds():
    data = synthetic()
    ten = rounds(data, n_rounds=10, seed=0)
    assert len({tuple(s.test) for s in ten}) == 10
    assert random_split(data, seed=4).test == ten[4].test


def test_few_shot_draws_from_train_only():
    data = synthetic()
    split = random_split(data, seed=1)
    shot = few_shot(split, shots=50, seed=2)
    assert len(shot.train) == 50 and set(shot.train) <= set(split.train)
    assert shot.val == split.val and shot.test == split.test
    assert len(few_shot(split, fraction=0.2).train) == round(len(split.train) * 0.2)
    with pytest.raises(ValueError, match="exactly one"):
        few_shot(split)
    with pytest.raises(ValueError, match="cannot draw"):
        few_shot(split, shots=10_000)


def test_json_round_trip(tmp_path):
    split = few_shot(random_split(synthetic(), seed=5), shots=20, seed=1)
    split.save(tmp_path / "splits/round5.json")
    assert Split.load(tmp_path / "splits/round5.json") == split
    (tmp_path / "bad.json").write_text('{"version": 99}')
    with pytest.raises(ValueError, match="bad.json"):
        Split.load(tmp_path / "bad.json")


def test_koniq_official_split_from_shared_labels(shared_data):
    data = load_dataset("koniq10k", shared_data / "labels/KonIQ-10k", check_images=False)
    split = official_split(data)
    assert (len(split.train), len(split.val), len(split.test)) == (7058, 1000, 2015)


def test_biq2021_official_split_carves_validation_from_train(shared_data):
    data = load_dataset("biq2021", shared_data / "biq2021")
    split = official_split(data, seed=0, val_fraction=0.2)
    assert (len(split.train), len(split.val), len(split.test)) == (4000, 1000, 0)
    assert split.notes["val_carved_from_train"] and "test_missing" in split.notes
    split.check_disjoint(data)


def test_no_official_split():
    with pytest.raises(ValueError, match="no official split"):
        official_split(synthetic())
