"""Find the image files named on a command line, in natural sort order."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from mpiqa.data.images import IMAGE_EXTENSIONS

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple:
    """Sort key putting ``img2`` before ``img10``; case-insensitive, ties broken by case."""
    parts = _DIGITS.split(text)
    return tuple((0, int(p), p) if p.isdigit() else (1, p.casefold(), p) for p in parts), text


@dataclass
class Discovery:
    """Files to score, and the files of scanned folders left out for their extension."""

    files: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def discover_images(paths: Iterable[str], recursive: bool = False) -> Discovery:
    """Expand folders into their image files (by extension; ``recursive`` descends).

    A path that is a file is kept whatever its extension, and one that does not exist is
    kept too, so that scoring reports it instead of dropping it silently. The result is
    de-duplicated and in natural sort order.
    """
    found: dict[str, None] = {}
    ignored: list[str] = []
    for raw in paths:
        if not os.path.isdir(raw):
            found[raw] = None
            continue
        if recursive:
            walk = ((d, f) for d, _, files in os.walk(raw) for f in files)
        else:
            walk = ((raw, e.name) for e in os.scandir(raw) if not e.is_dir())
        for folder, name in walk:
            full = os.path.join(folder, name)
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found[full] = None
            else:
                ignored.append(full)
    return Discovery(files=sorted(found, key=natural_key), ignored=sorted(ignored, key=natural_key))
