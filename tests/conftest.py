"""Shared fixtures. Tests never reach the network and never touch the user's cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MPIQA_OFFLINE", "1")
    monkeypatch.setenv("MPIQA_CACHE_DIR", str(tmp_path_factory.mktemp("mpiqa-cache")))
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture
def forbid_listing(monkeypatch):
    """``forbid_listing(folder)``: listing ``folder`` raises PermissionError from then on
    (the tests may run as root, for whom chmod 000 forbids nothing)."""
    real = os.scandir
    forbidden: set[str] = set()

    def scandir(path="."):
        if os.fspath(path) in forbidden:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return lambda folder: forbidden.add(str(folder))


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the repository; tests using it skip where it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED


@pytest.fixture(scope="session")
def micro_dir() -> Path:
    path = SHARED / "micro"
    if not path.is_dir():
        pytest.skip("../shared/data/micro is not present")
    return path


def pytest_configure(config):
    # Keep the suite inside its time budget on 2 cores.
    os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def csv_task(monkeypatch):
    """Point the 'csv' adapter at the task's layout (image folder and content column)."""
    from mpiqa.data.datasets import base

    spec = base._DATASETS["csv"]

    def loader(root, check_images=True):
        return spec.loader(root, check_images, image_dir="imgs", content_column="content")

    monkeypatch.setitem(base._DATASETS, "csv", base.DatasetSpec("csv", spec.description, loader))
