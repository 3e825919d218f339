"""Find the image files named on a command line, in natural sort order."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from mpiqa.data.images import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)
_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple:
    """Sort key putting ``img2`` before ``img10``; case-insensitive, ties broken by case."""
    parts = _DIGITS.split(text)
    return tuple((0, int(p), p) if p.isdigit() else (1, p.casefold(), p) for p in parts), text


@dataclass
class Discovery:
    """Files to score, the files of scanned folders left out for their extension, the
    image files of scanned folders left out for being hidden, the folders that could not
    be listed (``"folder: reason"``), and the symbolic links to folders that a recursive
    search did not follow."""

    files: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)

    def warn_unreadable(self) -> Discovery:
        """Log a warning per folder that could not be listed (for callers that go on
        without it, such as training on a folder); returns ``self``."""
        for folder in self.unreadable:
            logger.warning("cannot list folder %s: its images are left out", folder)
        return self


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symlink loop: kept as a file, so that scoring reports it
        return False


def discover_images(paths: Iterable[str], recursive: bool = False) -> Discovery:
    """Expand folders into their image files (by extension; ``recursive`` descends).

    A path that is a file is kept whatever its extension, and one that does not exist is
    kept too, so that scoring reports it instead of dropping it silently.

    Within a scanned folder, files and folders whose names start with ``.`` are hidden:
    macOS's ``._IMG_0001.JPG`` copies of file metadata (not images), thumbnail caches
    such as a NAS's ``.@__thumb`` (and Synology's ``@eaDir``, hidden here too), version
    control. Their image files are left out and listed in ``hidden``; other hidden files
    are passed over (``.DS_Store``, mpiqa's own ``.scores.csv.lock``). A hidden folder
    named as a path is searched as any other.

    A folder that cannot be listed (no permission, say) is recorded in ``unreadable``
    and the others are still searched. A recursive search does not follow symbolic links to folders (as
    ``find`` without ``-L``; that also keeps loops out) and records them in ``links``.
    The result is de-duplicated and in natural sort order.
    """
    found: dict[str, None] = {}
    ignored: list[str] = []
    unreadable: list[str] = []
    links: list[str] = []
    hidden: list[str] = []

    def record(error: OSError) -> None:
        unreadable.append(f"{error.filename}: {error.strerror or error}")

    for raw in paths:
        if not os.path.isdir(raw):
            found[raw] = None
            continue
        if recursive:
            walk = []
            # os.walk skips a folder it cannot list unless told
            for folder, dirs, files in os.walk(raw, onerror=record):
                walk += [(folder, name) for name in files]
                links += [p for d in dirs if os.path.islink(p := os.path.join(folder, d))]
        else:
            try:
                with os.scandir(raw) as entries:
                    walk = [(raw, e.name) for e in entries if not _is_dir(e)]
            except OSError as error:
                record(error)
                continue
        for folder, name in walk:
            full = os.path.join(folder, name)
            image = os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
            if _hidden(os.path.relpath(full, raw)):
                if image:
                    hidden.append(full)
            elif image:
                found[full] = None
            else:
                ignored.append(full)
    return Discovery(
        files=sorted(found, key=natural_key),
        ignored=sorted(ignored, key=natural_key),
        unreadable=unreadable,
        links=sorted(links, key=natural_key),
        hidden=sorted(hidden, key=natural_key),
    )


# Synology's NAS keeps its thumbnails of every photo in folders of this name, unhidden
_METADATA_FOLDERS = {"@eaDir"}


def _hidden(relative: str) -> bool:
    """Whether a path within a scanned folder passes through a name starting with '.'
    (or a NAS's metadata folder)."""
    return any(p.startswith(".") or p in _METADATA_FOLDERS for p in relative.split(os.sep))


def read_path_list(source: str) -> list[str]:
    """The paths listed in the file ``source`` (``-``: standard input), one per line, as
    ``find`` or ``ls`` writes them: blank lines skipped, a trailing carriage return
    dropped, nothing else stripped (names may begin or end with spaces). Bytes that are
    not UTF-8 are kept as the file system's own (surrogate escapes, as Python names such
    files).

    Raises:
        FileNotFoundError: ``source`` does not exist (the message names it).
        ValueError: ``source`` is a folder.
    """

    if source == "-":
        stream = open(sys.stdin.fileno(), encoding="utf-8", errors="surrogateescape", closefd=False)  # noqa: SIM115
    elif os.path.isdir(source):
        raise ValueError(
            f"--files-from {source}: a folder, not a list of paths (name it as a PATH)"
        )
    else:
        try:
            stream = open(source, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
        except FileNotFoundError:
            raise FileNotFoundError(f"--files-from {source}: no such file") from None
    with stream:
        lines = stream.read().split("\n")
    return [line.removesuffix("\r") for line in lines if line.removesuffix("\r")]
