"""Registry of official files, the cache, verification and downloads (offline: file://)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from mpiqa import load_clip
from mpiqa.backbones import build_random_clip, pretrained
from mpiqa.backbones.pretrained import (
    ChecksumError,
    PretrainedFile,
    WeightsNotFoundError,
    download_url,
    get_pretrained,
    resolve_pretrained,
    sha256_of,
)


def test_official_hashes_are_registered():
    assert get_pretrained("ViT-B/32").sha256 == (
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
    )
    assert get_pretrained("ViT-B-16", "openai").sha256 == (
        "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"
    )
    for arch, tag in pretrained.list_pretrained():
        entry = get_pretrained(arch, tag)
        assert len(entry.sha256) == 64
        if tag == "openai":  # OpenAI's addresses carry the whole digest
            assert entry.sha256 in entry.url
        elif entry.url:  # open_clip's file names carry its first 8 hex digits
            assert f"-{entry.sha256[:8]}." in entry.file and entry.url.endswith(entry.file)


def test_open_clip_laion_weights_are_registered_with_their_activation():
    assert get_pretrained("RN50", "yfcc15m").sha256.startswith("455df137")
    assert get_pretrained("ViT-B-32", "laion400m_e32").act is None  # trained with QuickGELU
    assert get_pretrained("ViT-B-32", "laion2b_e16").act == "gelu"
    assert get_pretrained("ViT-L-14", "laion400m_e32").file == "vit_l_14-laion400m_e32-3d133497.pt"


def test_offline_miss_names_file_hash_and_how_to_point_at_a_copy():
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_pretrained("ViT-B/16")
    message = str(info.value)
    for needle in (
        "ViT-B-16.pt",
        "5806e77cd80f8b59",
        "--weights",
        "MPIQA_CACHE_DIR",
        "MPIQA_OFFLINE",
    ):
        assert needle in message


@pytest.fixture
def tiny_entry(tmp_path, monkeypatch):
    """A registered 'official' file for test-tiny, written to a folder of our own."""
    model = build_random_clip("test-tiny", seed=4)
    source = tmp_path / "src" / "tiny.safetensors"
    source.parent.mkdir()
    save_file({k.removeprefix("text."): v for k, v in model.state_dict().items()}, source)
    entry = PretrainedFile(
        "test-tiny", "unit", "tiny.safetensors", sha256_of(source), source.as_uri()
    )
    registry = dict(pretrained._registry())
    registry[("test-tiny", "unit")] = entry
    monkeypatch.setattr(pretrained, "_registry", lambda: registry)
    return model, source, entry


def test_cached_file_is_found_and_verified(tiny_entry):
    model, source, entry = tiny_entry
    cached = pretrained.cache_dir() / entry.file
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(source.read_bytes())
    loaded = load_clip("test-tiny:unit")
    assert torch.equal(loaded.visual.proj, model.visual.proj)
    cached.write_bytes(source.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ChecksumError, match="SHA-256"):
        load_clip("test-tiny:unit")


def test_download_when_online(tiny_entry, monkeypatch):
    model, _, entry = tiny_entry
    monkeypatch.delenv("MPIQA_OFFLINE")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    path = resolve_pretrained("test-tiny", "unit")
    assert path == pretrained.cache_dir() / entry.file and sha256_of(path) == entry.sha256


def test_download_with_wrong_hash_leaves_nothing(tmp_path):
    source = tmp_path / "f.bin"
    source.write_bytes(b"not the registered bytes")
    destination = tmp_path / "cache" / "f.bin"
    with pytest.raises(ChecksumError):
        download_url(source.as_uri(), destination, sha256="0" * 64)
    assert not destination.exists() and list(destination.parent.iterdir()) == []


def test_registered_activation_is_applied(tiny_entry, monkeypatch):
    """A registered tag trained with exact GELU loads with it (the shapes cannot tell)."""
    import dataclasses

    model, source, entry = tiny_entry
    registry = dict(pretrained._registry())
    registry[("test-tiny", "gelu")] = dataclasses.replace(entry, tag="gelu", act="gelu")
    monkeypatch.setattr(pretrained, "_registry", lambda: registry)
    cached = pretrained.cache_dir() / entry.file
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(source.read_bytes())
    assert load_clip("test-tiny:unit").config.act == "quick_gelu"
    assert load_clip("test-tiny:gelu").config.act == "gelu"
    assert load_clip("test-tiny:gelu", act="quick_gelu").config.act == "quick_gelu"
