"""Process-wide settings for fast CPU inference.

PyTorch's CPU allocator asks the C library for every tensor and hands it back when the
tensor dies. glibc's malloc serves blocks above its mmap threshold (128 kB, adapting up
to 32 MB) with ``mmap`` and returns them with ``munmap``, so each large activation of a
forward pass is mapped, page-faulted in and zeroed by the kernel, and unmapped again.
For a ViT-B at batch 16 those faults cost 10-15 % of a forward pass on a 2-core x86
CPU (``benchmarks/README.md``). PyTorch's performance guide fixes this by preloading
jemalloc or tcmalloc; :func:`tune_malloc` gets the same effect from glibc itself with
two ``mallopt`` calls, so nothing extra has to be installed or preloaded.

The cost: memory freed by PyTorch stays with the process for reuse instead of going
back to the system, so resident memory stays near its high-water mark.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

# Set MPIQA_MALLOC=default to leave the C library's allocator as it is.
ENV_VAR = "MPIQA_MALLOC"

# glibc's mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Blocks below this come from malloc's heap (reused) rather than a fresh mapping:
# covers a ViT-B/16 MLP activation up to batch ~100 (197 x 3072 x 4 B per image).
MMAP_THRESHOLD = 256 << 20
# Free memory at the top of the heap is returned to the system only above this.
TRIM_THRESHOLD = 1 << 30

_tuned: bool | None = None


def tune_malloc() -> bool:
    """Keep large freed blocks in glibc's heap for reuse (see the module docstring).

    Idempotent, and a no-op that returns False where it does not apply: not Linux, not
    glibc (e.g. musl), or ``MPIQA_MALLOC=default`` in the environment.

    Returns:
        Whether the setting is in effect.
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if os.environ.get(ENV_VAR, "").lower() == "default":
        logger.debug("%s=default: leaving malloc's settings alone", ENV_VAR)
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; both must hold, or freed blocks are still unmapped.
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    logger.debug("malloc tuned for large tensors: %s", _tuned)
    return _tuned


def malloc_tuned() -> bool:
    """Whether :func:`tune_malloc` has put its setting in effect in this process."""
    return bool(_tuned)


class MissingExtraError(ImportError):
    """An optional dependency group (``pip install 'mpiqa[...]'``) is not installed: a
    setup step for the user, reported in one line by the CLI."""


def peak_rss_mb() -> float | None:
    """This process's peak resident memory in MB, or None where the platform has no
    ``resource`` module (Windows)."""
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # kilobytes on Linux, bytes on macOS
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024
