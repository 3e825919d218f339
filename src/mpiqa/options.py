"""Option dataclasses read from plain dicts (JSON / TOML tables): unknown keys are
refused by name rather than passed on as a TypeError."""

from __future__ import annotations

from dataclasses import fields
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


def options_from_dict(cls: type[T], data: dict[str, Any], what: str) -> T:
    """``cls(**data)``, refusing keys ``cls`` lacks and values of another type than its
    annotation (a file's ``"n_ctx": "four"`` must not reach a tensor constructor).

    Raises:
        ValueError: ``data`` is not a mapping, names an unknown option, or gives one a
            value of the wrong type (``what`` says which kind, e.g. "model").
    """
    if not isinstance(data, dict):
        raise ValueError(f"{what} options must be a mapping, got {type(data).__name__}")
    unknown = set(data) - {f.name for f in fields(cls)}  # type: ignore[arg-type]
    if unknown:
        raise ValueError(f"unknown {what} option(s): {sorted(unknown)}")
    hints = get_type_hints(cls)
    for name, value in data.items():
        if not _fits(value, hints[name]):
            raise ValueError(f"{what} option {name}: {value!r} is not {_describe(hints[name])}")
    return cls(**data)


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` (from JSON or TOML) can stand for the annotation ``hint``: ints
    for floats, lists for tuples; anything for annotations this does not know."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (Union, UnionType):
        return any(_fits(value, a) for a in args)
    if origin is Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        if origin is tuple and args:  # a fixed length, each of its own type
            return len(value) == len(args) and all(map(_fits, value, args))
        if origin is list and args:
            return all(_fits(v, args[0]) for v in value)
        return True
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def _describe(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if hint is type(None):
        return "null"
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    if origin in (tuple, list):
        return "a list" + (f" of {_describe(args[0])}" if args else "")
    return f"a{'n' if getattr(hint, '__name__', 'x')[0] in 'aeiou' else ''} {getattr(hint, '__name__', hint)}"


def check_option(value: Any, hint: Any, what: str) -> None:
    """Refuse ``value`` for an option annotated ``hint`` as :func:`options_from_dict` does
    (``what`` names the option in the message).

    Raises:
        ValueError: ``value`` is not of the annotated type.
    """
    if not _fits(value, hint):
        raise ValueError(f"{what}: {value!r} is not {_describe(hint)}")


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
