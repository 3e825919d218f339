"""mpiqa.runtime: the malloc setting takes effect, and can be switched off; peak memory
reads in MB whatever unit the platform gives."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mpiqa import runtime

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the setting applies to glibc on Linux"
)

# Allocates and frees a 64 MB tensor (above glibc's largest default mmap threshold) and
# prints the resident memory (kB) it leaves behind.
_PROBE = """
import sys
from mpiqa import runtime
tuned = runtime.tune_malloc()
import torch
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
before = rss()
x = torch.ones(16 << 20)
del x
print(int(tuned), rss() - before)
"""


def _probe(**env: str) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**os.environ, **env},
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return out[0] == "1", int(out[1])


def test_freed_tensor_memory_is_kept_for_reuse():
    tuned, kept_kb = _probe()
    if not tuned:
        pytest.skip("not glibc")
    assert kept_kb > 60_000  # the 64 MB block stays in malloc's heap


def test_env_var_leaves_malloc_alone():
    tuned, kept_kb = _probe(**{runtime.ENV_VAR: "default"})
    assert not tuned
    assert kept_kb < 10_000  # glibc unmapped the block


def test_tune_malloc_is_idempotent():
    first = runtime.tune_malloc()
    assert runtime.tune_malloc() == first == runtime.malloc_tuned()


def test_peak_rss_in_mb_from_each_platform_unit(monkeypatch):
    import resource
    from types import SimpleNamespace

    monkeypatch.setattr(resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=3 << 20))
    monkeypatch.setattr(sys, "platform", "linux")
    assert runtime.peak_rss_mb() == 3 << 10  # kilobytes
    monkeypatch.setattr(sys, "platform", "darwin")
    assert runtime.peak_rss_mb() == 3  # bytes
    monkeypatch.setitem(sys.modules, "resource", None)  # Windows
    assert runtime.peak_rss_mb() is None
