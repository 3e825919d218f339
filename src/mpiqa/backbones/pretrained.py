"""Registry of known pretrained CLIP files, the local cache, and optional downloads.

Where weights are looked for, in order:
1. ``$MPIQA_CACHE_DIR`` (default ``~/.cache/mpiqa``) and OpenAI's own download folder
   ``~/.cache/clip``: the registered file, checked against its SHA-256;
2. a transformers snapshot of the registered hub repository under ``<cache>/hf/``;
3. unless ``MPIQA_OFFLINE`` or ``HF_HUB_OFFLINE`` is set: a download from the hub
   (needs the ``hub`` extra) or from the file's registered address, into the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from mpiqa.atomic import atomic_write
from mpiqa.backbones.config import canonical_name

logger = logging.getLogger(__name__)

CACHE_ENV = "MPIQA_CACHE_DIR"
OFFLINE_ENVS = ("MPIQA_OFFLINE", "HF_HUB_OFFLINE")
DEFAULT_TAG = "openai"


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are neither in the cache nor downloadable; the message says
    which file is expected, its SHA-256, and how to point mpiqa at a local copy."""


class ChecksumError(ValueError):
    """A file's SHA-256 differs from the registered one."""


@dataclass(frozen=True)
class PretrainedFile:
    arch: str
    tag: str
    file: str
    sha256: str
    url: str | None = None
    hf_hub: str | None = None
    packaged: bool = False  # shipped inside the package (mpiqa/weights/), no download
    # the activation the weights were trained with, where the shapes' registered
    # architecture says otherwise (open_clip's LAION ViTs use exact GELU)
    act: str | None = None


def packaged_path(file: str) -> Path:
    """Where a file shipped in ``mpiqa/weights/`` lies."""
    return Path(str(resources.files("mpiqa").joinpath("weights", file)))


@lru_cache(maxsize=1)
def _registry() -> dict[tuple[str, str], PretrainedFile]:
    raw = json.loads(resources.files("mpiqa.backbones").joinpath("pretrained.json").read_text())
    return {
        (arch, tag): PretrainedFile(arch=arch, tag=tag, **entry)
        for arch, tags in raw.items()
        if not arch.startswith("_")
        for tag, entry in tags.items()
    }


def list_pretrained() -> list[tuple[str, str]]:
    """(architecture, tag) pairs of the registered pretrained files."""
    return sorted(_registry())


def get_pretrained(arch: str, tag: str | None = None) -> PretrainedFile | None:
    return _registry().get((canonical_name(arch), tag or default_tag(arch)))


def default_tag(arch: str) -> str:
    """``openai`` where registered, else the architecture's only registered tag."""
    tags = [t for a, t in _registry() if a == canonical_name(arch)]
    return tags[0] if len(tags) == 1 else DEFAULT_TAG


def find_by_sha256(digest: str) -> PretrainedFile | None:
    return next((p for p in _registry().values() if p.sha256 == digest), None)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mpiqa")


def offline() -> bool:
    return any(os.environ.get(name, "").strip() not in ("", "0") for name in OFFLINE_ENVS)


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> None:
    """Raises ChecksumError naming the file and both digests when they differ."""
    actual = sha256_of(path)
    if actual != expected:
        raise ChecksumError(f"{path}: SHA-256 is {actual}, expected {expected}")


def download_url(url: str, destination: Path, sha256: str | None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``destination`` atomically, verifying the SHA-256 if given."""

    def fetch(tmp: Path) -> None:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as src:
            shutil.copyfileobj(src, out, length=1 << 20)
        if sha256 is not None:
            verify_sha256(tmp, sha256)

    return atomic_write(destination, fetch)


def _one_line(err: Exception, limit: int = 160) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _hub_snapshot_dir(repo_id: str) -> Path:
    return cache_dir() / "hf" / repo_id.replace("/", "--")


def _download_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download  # optional extra: mpiqa[hub]

    target = _hub_snapshot_dir(repo_id)
    snapshot_download(
        repo_id, local_dir=target, allow_patterns=["config.json", "model.safetensors"]
    )
    return target


def _cached(entry: PretrainedFile) -> Path | None:
    if entry.packaged:
        path = packaged_path(entry.file)
        if path.is_file():
            verify_sha256(path, entry.sha256)
            return path
    for folder in (cache_dir(), Path.home() / ".cache" / "clip"):
        candidate = folder / entry.file
        if candidate.is_file():
            verify_sha256(candidate, entry.sha256)
            return candidate
    if entry.hf_hub:
        snapshot = _hub_snapshot_dir(entry.hf_hub)
        if (snapshot / "config.json").is_file() and (snapshot / "model.safetensors").is_file():
            return snapshot
    return None


def resolve_pretrained(arch: str, tag: str | None = None) -> Path:
    """Local path of the registered weights for ``arch``/``tag``, downloading if allowed.

    Raises:
        KeyError: nothing is registered under that name and tag.
        ChecksumError: a cached file does not match its registered SHA-256.
        WeightsNotFoundError: not cached, and offline or every download failed.
    """
    tag = tag or default_tag(arch)
    entry = get_pretrained(arch, tag)
    if entry is None:
        known = ", ".join(f"{a}:{t}" for a, t in list_pretrained())
        raise KeyError(f"no pretrained weights registered for {arch}:{tag}; known: {known}")
    found = _cached(entry)
    if found is not None:
        return found
    failures = []
    if offline():
        failures.append("downloads are off (MPIQA_OFFLINE or HF_HUB_OFFLINE is set)")
    else:
        if entry.hf_hub:
            try:
                return _download_hub(entry.hf_hub)
            except ImportError:
                failures.append("hub download needs the hub extra (pip install 'mpiqa[hub]')")
            except Exception as err:  # network, auth and hub errors all mean: not here
                failures.append(f"hub download of {entry.hf_hub} failed: {_one_line(err)}")
        if entry.url:
            try:
                return download_url(entry.url, cache_dir() / entry.file, entry.sha256)
            except (OSError, ChecksumError) as err:
                failures.append(f"download failed: {_one_line(err)}")
    raise WeightsNotFoundError(
        f"pretrained weights for {entry.arch} ({entry.tag}) not found: expected the file "
        f"{entry.file} (sha256 {entry.sha256}) in {cache_dir()} or ~/.cache/clip"
        + (f", or a snapshot of the hub repository {entry.hf_hub}" if entry.hf_hub else "")
        + f" [{'; '.join(failures)}]. Point mpiqa at a local copy with --weights FILE "
        f"(Python: weights=FILE), or put it in the folder named by ${CACHE_ENV}."
        + (f" Official address: {entry.url}" if entry.url else "")
    )
