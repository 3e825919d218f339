"""Option dataclasses read from plain dicts (JSON / TOML tables): unknown keys are
refused by name rather than passed on as a TypeError."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def options_from_dict(cls: type[T], data: dict[str, Any], what: str) -> T:
    """``cls(**data)``, refusing keys ``cls`` lacks.

    Raises:
        ValueError: ``data`` is not a mapping, or names an unknown option (``what``
            says which kind, e.g. "model").
    """
    if not isinstance(data, dict):
        raise ValueError(f"{what} options must be a mapping, got {type(data).__name__}")
    unknown = set(data) - {f.name for f in fields(cls)}  # type: ignore[arg-type]
    if unknown:
        raise ValueError(f"unknown {what} option(s): {sorted(unknown)}")
    return cls(**data)
