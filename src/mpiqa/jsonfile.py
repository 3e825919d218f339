"""The JSON that mpiqa writes for people and other programs (metrics, summaries, logs).

Python's ``json`` writes a float that is not finite as ``NaN`` or ``Infinity``, which is
not JSON (RFC 8259): JavaScript's ``JSON.parse`` and most strict parsers refuse the whole
file, and jq turns ``Infinity`` into a large number. An SRCC is NaN when a model scores
every image alike, and a comparison that was skipped (``finetune --reference none``) has
no figure, so such values are common in our results: they are written as ``null``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None and NumPy scalars by
    Python numbers, through dicts, lists and tuples (tuples become lists)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, indent: int | None = None) -> str:
    """Standard JSON text of ``value`` (non-finite floats as null; objects JSON has no
    type for, such as paths, as their ``str``)."""
    return json.dumps(plain(value), indent=indent, default=str, allow_nan=False)
