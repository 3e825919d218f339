"""What an IQA dataset is once read: records with raw and normalised scores."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Record:
    """One labelled (or unlabelled) image.

    Attributes:
        key: the image's path relative to the dataset root, with "/" separators; unique
            within a dataset, and what split files store.
        path: absolute path of the image file.
        raw_score: the label as the dataset publishes it (MOS or DMOS); None if unlabelled.
        score: ``raw_score`` mapped to [0, 1] with higher = better (DMOS flipped).
        content: id of the scene / reference image: images sharing it must stay on one
            side of a split. Defaults to the key itself.
        distortion: distortion type name, where the dataset defines one.
        level: distortion level (1 = mildest), where defined.
        scene: scene category, where the dataset provides one.
        group: the dataset's own split membership (e.g. KonIQ's "training"/"test").
        source: the collection the image comes from within the dataset, where it names
            one (BIQ2021's file-name prefix ``ss01`` / ``ss02`` / ``ss03``); MOS levels
            can differ between sources, so a model may learn quality within them.
    """

    key: str
    path: Path
    raw_score: float | None = None
    score: float | None = None
    content: str = ""
    distortion: str | None = None
    level: int | None = None
    scene: str | None = None
    group: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if not self.content:
            object.__setattr__(self, "content", self.key)


@dataclass
class IQADataset:
    """Records of one dataset plus what is needed to interpret their scores.

    Attributes:
        name: registry name of the adapter.
        root: the folder the dataset was read from.
        records: in the order of the label file.
        scale: (low, high) of the raw score used for normalisation.
        higher_better: direction of the raw score (False for DMOS).
        synthetic: distortions applied to reference images (split by content).
        distortions: names of the distortion types, index = class id.
    """

    name: str
    root: Path
    records: list[Record]
    scale: tuple[float, float] = (0.0, 1.0)
    higher_better: bool = True
    synthetic: bool = False
    distortions: Sequence[str] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __getitem__(self, index: int) -> Record:
        return self.records[index]

    def by_key(self) -> dict[str, Record]:
        return {r.key: r for r in self.records}

    def subset(self, keys: Sequence[str]) -> list[Record]:
        """Records for ``keys`` in that order. Raises KeyError naming an unknown key."""
        index = self.by_key()
        missing = [k for k in keys if k not in index]
        if missing:
            raise KeyError(f"{len(missing)} key(s) not in dataset {self.name}, e.g. {missing[:3]}")
        return [index[k] for k in keys]


def normalise(raw: float, scale: tuple[float, float], higher_better: bool) -> float:
    """Map a raw score on ``scale`` to [0, 1], higher = better."""
    low, high = scale
    value = (raw - low) / (high - low)
    return value if higher_better else 1.0 - value
