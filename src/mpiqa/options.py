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


def parse_key_values(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    """``["scale=1,5", "lower_better=true", "csv_file=labels.csv"]`` -> a dict of adapter
    options. A value is read as JSON when it is JSON (numbers, true/false, lists), as a
    list when it has commas (``1,5`` -> [1.0, 5.0]), else as text.

    Raises:
        ValueError: an item without ``=`` (the message names ``flag``).
    """
    import json

    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} {pair!r}: expected KEY=VALUE")
        options[key.strip()] = _value(text, json)
    return options


def _value(text: str, json) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    if "," in text:
        return [_value(part.strip(), json) for part in text.split(",")]
    return text
