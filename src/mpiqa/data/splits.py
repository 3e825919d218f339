"""Train / validation / test splits, few-shot subsets, and their JSON files.

Rules that keep reported numbers honest:
- synthetic datasets (and any dataset whose records share a ``content``) are split by
  content, so no reference image appears on two sides;
- the validation part is carved from the training part: model selection never sees test;
- few-shot subsets are drawn from the training part only;
- a split is saved as JSON naming every image, so a figure can be reproduced exactly.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mpiqa.atomic import atomic_write
from mpiqa.data.records import IQADataset

SPLIT_VERSION = 1


@dataclass
class Split:
    """Keys of the records on each side, and how they were drawn."""

    dataset: str
    train: list[str]
    val: list[str]
    test: list[str]
    seed: int
    protocol: str
    notes: dict = field(default_factory=dict)

    def parts(self) -> dict[str, list[str]]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def to_json(self) -> str:
        return json.dumps({"version": SPLIT_VERSION, **asdict(self)}, indent=1)

    def save(self, path: str | Path) -> None:
        """Write atomically (a crash never leaves half a split file)."""
        atomic_write(path, lambda tmp: tmp.write_text(self.to_json()))

    @classmethod
    def load(cls, path: str | Path) -> Split:
        """Raises ValueError naming the file if it is not a split file of this version."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"split file not found: {path}")
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            version = data.pop("version")
            if version != SPLIT_VERSION:
                raise ValueError(f"split file version {version}, expected {SPLIT_VERSION}")
            return cls(**data)
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: not a valid split file ({err})") from None

    def check_disjoint(self, dataset: IQADataset | None = None) -> None:
        """Raises ValueError if an image, or (given the dataset) a content, is on two sides."""
        sides = self.parts()
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = set(sides[a]) & set(sides[b])
            if shared:
                raise ValueError(
                    f"{len(shared)} image(s) in both {a} and {b}, e.g. {sorted(shared)[:3]}"
                )
        if dataset is not None:
            contents = {
                name: {r.content for r in dataset.subset(keys)} for name, keys in sides.items()
            }
            for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
                shared = contents[a] & contents[b]
                if shared:
                    raise ValueError(f"content {sorted(shared)[:3]} in both {a} and {b}")


def _groups(dataset: IQADataset) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for record in dataset:
        groups.setdefault(record.content, []).append(record.key)
    return groups


def _take(groups: dict[str, list[str]], names: Sequence[str]) -> list[str]:
    return [key for name in names for key in groups[name]]


def random_split(
    dataset: IQADataset, seed: int = 0, test_fraction: float = 0.2, val_fraction: float = 0.1
) -> Split:
    """Seeded split by content: ``test_fraction`` of the contents to test, then
    ``val_fraction`` of the remaining contents to validation.

    Raises:
        ValueError: fractions outside [0, 1), or too few contents to fill every part.
    """
    for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    groups = _groups(dataset)
    names = sorted(groups)
    random.Random(seed).shuffle(names)
    n_test = round(len(names) * test_fraction)
    test_names, rest = names[:n_test], names[n_test:]
    n_val = round(len(rest) * val_fraction)
    val_names, train_names = rest[:n_val], rest[n_val:]
    if (
        not train_names
        or (test_fraction > 0 and not test_names)
        or (val_fraction > 0 and not val_names)
    ):
        raise ValueError(
            f"{dataset.name}: {len(names)} content group(s) are too few for this split"
        )
    return Split(
        dataset.name,
        _take(groups, train_names),
        _take(groups, val_names),
        _take(groups, test_names),
        seed,
        protocol=f"random-{round((1 - test_fraction) * 100)}/{round(test_fraction * 100)}",
        notes={"by_content": len(groups) < len(dataset), "val_fraction": val_fraction},
    )


# Official groups of the datasets that have them: record.group -> side.
_OFFICIAL = {
    "koniq10k": {"training": "train", "validation": "val", "test": "test"},
    "biq2021": {"train": "train", "test": "test"},
}


def official_split(dataset: IQADataset, seed: int = 0, val_fraction: float = 0.1) -> Split:
    """The dataset's own split (KonIQ-10k's sets, BIQ2021's train/test files). Where it has
    no validation set, ``val_fraction`` of its training part is carved out (seeded).

    Raises:
        ValueError: the dataset has no official split, or its records lack the groups.
    """
    mapping = _OFFICIAL.get(dataset.name)
    if mapping is None:
        raise ValueError(
            f"{dataset.name} has no official split: split it at random (--protocol random "
            "on the command line, random_split in Python)"
        )
    sides: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for record in dataset:
        if record.group not in mapping:
            raise ValueError(
                f"{dataset.name}: record {record.key} has no official set (group {record.group!r})"
            )
        sides[mapping[record.group]].append(record.key)
    if not sides["val"] and val_fraction > 0:
        train = list(sides["train"])
        random.Random(seed).shuffle(train)
        n_val = round(len(train) * val_fraction)
        chosen = set(train[:n_val])
        sides["val"] = [k for k in sides["train"] if k in chosen]
        sides["train"] = [k for k in sides["train"] if k not in chosen]
    notes = {"val_carved_from_train": bool(sides["val"]) and "val" not in mapping.values()}
    if not sides["test"]:
        notes["test_missing"] = "the official test part is not in this copy of the dataset"
    return Split(dataset.name, sides["train"], sides["val"], sides["test"], seed, "official", notes)


def rounds(
    dataset: IQADataset,
    n_rounds: int = 10,
    seed: int = 0,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
) -> list[Split]:
    """The n-round protocol: ``n_rounds`` random splits seeded ``seed``, ``seed + 1``, ..."""
    return [random_split(dataset, seed + i, test_fraction, val_fraction) for i in range(n_rounds)]


def few_shot(
    split: Split, shots: int | None = None, fraction: float | None = None, seed: int = 0
) -> Split:
    """Keep ``shots`` images (or ``fraction`` of them) of the training part, drawn with
    ``seed``; validation and test parts are unchanged.

    Raises:
        ValueError: neither or both of shots / fraction, or more shots than training images.
    """
    if (shots is None) == (fraction is None):
        raise ValueError("give exactly one of shots and fraction")
    n = shots if shots is not None else round(len(split.train) * fraction)
    if not 0 < n <= len(split.train):
        raise ValueError(f"cannot draw {n} images from a training part of {len(split.train)}")
    chosen = set(random.Random(seed).sample(split.train, n))
    return Split(
        split.dataset,
        [k for k in split.train if k in chosen],
        list(split.val),
        list(split.test),
        split.seed,
        f"{split.protocol}+{'shots-' + str(shots) if shots is not None else 'fraction-' + str(fraction)}",
        {**split.notes, "few_shot_seed": seed, "train_before_few_shot": len(split.train)},
    )
