"""Registry of dataset adapters and the checks every adapter shares."""

from __future__ import annotations

import math
import os
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mpiqa.data.records import IQADataset
from mpiqa.options import check_option

Loader = Callable[..., IQADataset]


class DatasetFormatError(ValueError):
    """A label file that cannot be parsed; the message starts with ``file:line:``."""


class MissingImagesError(FileNotFoundError):
    """Images listed in a label file are not on disk; the message counts and names some."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    loader: Loader


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str, description: str) -> Callable[[Loader], Loader]:
    def add(loader: Loader) -> Loader:
        _DATASETS[name] = DatasetSpec(name, description, loader)
        return loader

    return add


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted(_DATASETS)


def dataset_descriptions() -> dict[str, str]:
    return {n: _DATASETS[n].description for n in list_datasets()}


def dataset_options(name: str) -> dict[str, object]:
    """The options adapter ``name`` takes (``--dataset-option KEY=VALUE``) and their
    defaults."""
    import inspect

    parameters = inspect.signature(_DATASETS[name].loader).parameters
    return {
        key: p.default
        for key, p in parameters.items()
        if key not in ("root", "check_images")
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def load_dataset(name: str, root: str | Path, check_images: bool = True, **options) -> IQADataset:
    """Read a dataset from the folder its download unpacks to.

    Args:
        name: one of :func:`list_datasets` (case-insensitive; ``-`` and ``_`` ignored).
        root: the dataset folder.
        check_images: verify that every labelled image exists (set False to read the
            label file alone).
        **options: adapter options (see each adapter's docstring).

    Raises:
        KeyError: unknown dataset name.
        FileNotFoundError: ``root`` or its label file is missing (the message names the
            expected file); ``MissingImagesError`` when images are missing.
        DatasetFormatError: a label row cannot be parsed (``file:line: reason``).
    """
    key = name.lower().replace("-", "").replace("_", "")
    matches = [s for n, s in _DATASETS.items() if n.replace("-", "").replace("_", "") == key]
    if not matches:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{matches[0].name}: dataset folder not found: {root}")
    import inspect

    loader = matches[0].loader
    accepted = inspect.signature(loader).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(options) - set(accepted) - {"root"})
        if unknown:
            known = sorted(set(accepted) - {"root", "check_images"})
            raise ValueError(
                f"{matches[0].name}: unknown dataset option(s) {unknown}; it takes "
                f"{', '.join(known) or 'none'}"
            )
    # "lower_better=maybe" must not pass as a true value, nor "scale=1" reach a loader
    hints = typing.get_type_hints(loader)
    for key, value in options.items():
        if key not in hints:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and hints[key] is str:
            # text that reads as a number on a command line (score_column=2024)
            options[key] = value = str(value)
        check_option(value, hints[key], f"{matches[0].name}: dataset option {key}")
    return loader(root, check_images=check_images, **options)


def find_file(root: Path, candidates: Sequence[str], dataset: str) -> Path:
    """The first of ``candidates`` (relative paths) under ``root``, matched
    case-insensitively. Raises FileNotFoundError naming what was expected."""
    for candidate in candidates:
        exact = root / candidate
        if exact.is_file():
            return exact
        found = (
            CaseInsensitiveIndex(exact.parent).get(exact.name) if exact.parent.is_dir() else None
        )
        if found is not None:
            return found
    expected = " or ".join(candidates)
    raise FileNotFoundError(
        f"{dataset}: expected the label file {expected} in {root}; is this the folder the "
        f"{dataset} download unpacks to?"
    )


def find_dir(root: Path, candidates: Sequence[str], dataset: str, must_exist: bool = True) -> Path:
    """The first existing image folder of ``candidates``; without ``must_exist`` (labels
    read alone) the first candidate when none exists."""
    for candidate in candidates:
        if (root / candidate).is_dir():
            return root / candidate
    if not must_exist:
        return root / candidates[0]
    raise FileNotFoundError(
        f"{dataset}: expected an image folder {' or '.join(candidates)} in {root}"
    )


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:  # a symlink loop: kept, so that loading the image reports it
        return True


class CaseInsensitiveIndex:
    """File names of one folder, looked up exactly first, then ignoring case (TID2013 and
    BIQ2021 label files differ in case from the files on disk)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            with os.scandir(folder) as entries:
                names = [e.name for e in entries if _is_file(e)]
        except FileNotFoundError:
            names = []
        self.exact = set(names)
        self.folded = {n.casefold(): n for n in names}

    def get(self, name: str) -> Path | None:
        if name in self.exact:
            return self.folder / name
        actual = self.folded.get(name.casefold())
        return self.folder / actual if actual is not None else None


def _escapes(folder: Path, name: str) -> bool:
    if Path(name).is_absolute():
        return True
    inside = os.path.normpath(os.path.join(os.fspath(folder), name))
    return os.path.commonpath([inside, os.path.normpath(os.fspath(folder))]) != os.path.normpath(
        os.fspath(folder)
    )


def resolve_images(
    folder: Path,
    names: Iterable[str],
    dataset: str,
    label_file: Path,
    check_images: bool,
    allow_outside: bool = False,
) -> list[Path]:
    """Paths of ``names`` inside ``folder`` (names may contain sub-folders; with
    ``allow_outside``, also absolute paths and ``..``).

    Raises:
        DatasetFormatError: a name leads outside ``folder`` (a label file must not make
            mpiqa read arbitrary files) and ``allow_outside`` is off.
        MissingImagesError: some are missing (with ``check_images``): the first few and
            the count are named.
    """
    names = list(names)
    for name in names:
        if not allow_outside and _escapes(folder, name):
            raise DatasetFormatError(
                f"{label_file}: {name!r} lies outside the dataset folder {folder} (an "
                "absolute path or '..'); refused unless allowed: --dataset-option "
                "allow_outside_root=true (finetune with a CSV: --allow-outside-root)"
            )
    if not check_images:
        return [folder / n for n in names]
    indexes: dict[Path, CaseInsensitiveIndex] = {}
    paths, missing = [], []
    for name in names:
        target = folder / name
        if target.parent not in indexes:
            indexes[target.parent] = CaseInsensitiveIndex(target.parent)
        found = indexes[target.parent].get(target.name)
        if found is None:
            missing.append(name)
        paths.append(found)
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise MissingImagesError(
            f"{dataset}: {len(missing)} of {len(names)} images listed in {label_file.name} are "
            f"missing under {folder}: {shown} (correct their paths or drop their rows; in "
            "Python, check_images=False reads the labels alone)"
        )
    return paths


def label_key(root: Path, folder: Path, name: str) -> str:
    """A record's key: its path as the label file names it, relative to the dataset
    root. Keys do not depend on the case of the files on disk, so split files written
    with or without image checks agree."""
    return (folder / name).relative_to(root).as_posix()


def parse_float(text: str, where: str, what: str = "score") -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        hint = (
            " (a formula saved without its value: open and save the workbook in a spreadsheet "
            "program, or export it as CSV)"
            if isinstance(text, str) and text.startswith("=")
            else ""
        )
        raise DatasetFormatError(f"{where}: {what} {text!r} is not a number{hint}") from None
    if not math.isfinite(value):
        raise DatasetFormatError(f"{where}: {what} {text!r} is not a finite number")
    return value
