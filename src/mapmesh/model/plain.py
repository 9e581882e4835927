"""Frozen records checked against their type hints: JSON in, JSON out, standard library only.

The snapshot format (:mod:`mapmesh.model.snapshot`) is read by every proxy, where memory and
start-up count once per workload: pydantic and its per-class validators cost a sidecar about
10 MB. These records are frozen, slotted, keyword-only dataclasses; :func:`decode`
builds one from parsed JSON, checking each value against the field's type hint, and
:func:`to_json` turns one back into JSON-ready values.

The hints it understands are the ones the snapshot uses: ``int`` (not ``bool``), ``float``,
``str``, ``bool``, ``Literal[...]``, ``X | None``, ``tuple[X, ...]``, fixed tuples
(``tuple[str, str]``) and nested records. Unknown keys, missing required fields and values
of the wrong type are refused with a :class:`RecordError` naming the path
(``clusters[0].endpoints[1].port: expected an integer, got 'x'``). A field whose metadata
has ``omit_none`` is left out of the JSON when it is None. A record checks its own
constraints in ``__post_init__`` (raising ValueError), so constructing one in code checks
them too.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal, TypeVar, dataclass_transform

__all__ = ["Record", "RecordError", "decode", "omit_none", "record", "to_json"]

R = TypeVar("R", bound="Record")


class RecordError(ValueError):
    """A value that does not fit its record; the message starts with the path."""


class Record:
    """Base of every record (see :func:`record`)."""

    __slots__ = ()

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]


@dataclass_transform(frozen_default=True, kw_only_default=True)
def record(cls: type[R]) -> type[R]:
    """Make ``cls`` (a :class:`Record` subclass) a frozen, slotted, keyword-only dataclass."""
    return dataclasses.dataclass(frozen=True, slots=True, kw_only=True)(cls)


def omit_none(default: Any = None) -> Any:
    """A field left out of the JSON when it is None (so older encodings keep their bytes)."""
    return dataclasses.field(default=default, metadata={"omit_none": True})


def to_json(value: Any, exclude: Collection[str] = ()) -> Any:
    """JSON-ready values for ``value`` (a record, tuple or scalar); ``exclude`` names fields
    of ``value`` itself (not of nested records) to leave out."""
    if isinstance(value, Record):
        out: dict[str, Any] = {}
        for field in dataclasses.fields(value):  # type: ignore[arg-type]
            if field.name in exclude:
                continue
            item = getattr(value, field.name)
            if item is None and field.metadata.get("omit_none"):
                continue
            out[field.name] = to_json(item)
        return out
    if isinstance(value, tuple):
        return [to_json(item) for item in value]
    return value


def decode(cls: type[R], data: Any, path: str = "") -> R:
    """The record ``cls`` from parsed JSON ``data``; :class:`RecordError` when it does not fit."""
    return _checker(cls)(data, path)  # type: ignore[no-any-return]


# -- checkers, one per type hint, built once ------------------------------------------------

Checker = Callable[[Any, str], Any]
_CHECKERS: dict[Any, Checker] = {}


def _fail(path: str, expected: str, value: Any) -> RecordError:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return RecordError(f"{path or 'value'}: expected {expected}, got {shown}")


def _checker(hint: Any) -> Checker:
    checker = _CHECKERS.get(hint)
    if checker is None:
        checker = _CHECKERS[hint] = _build(hint)
    return checker


def _build(hint: Any) -> Checker:
    if isinstance(hint, type) and issubclass(hint, Record):
        return _record_checker(hint)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is int:
        return _scalar(lambda v: type(v) is int, "an integer")
    if hint is float:
        return _scalar(lambda v: type(v) in (int, float), "a number", float)
    if hint is str:
        return _scalar(lambda v: type(v) is str, "a string")
    if hint is bool:
        return _scalar(lambda v: type(v) is bool, "true or false")
    if origin is Literal:
        allowed = frozenset(args)
        expected = "one of " + ", ".join(repr(a) for a in args)
        return _scalar(lambda v: type(v) is str and v in allowed, expected)
    if origin in (types.UnionType, typing.Union):
        others = [a for a in args if a is not type(None)]
        if len(others) != 1 or len(args) != 2:
            raise TypeError(f"unsupported union {hint!r}")
        inner = _checker(others[0])
        return lambda v, path: None if v is None else inner(v, path)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _checker(args[0])
            return lambda v, path: tuple(
                item(x, f"{path}[{i}]") for i, x in enumerate(_list(v, path))
            )
        items = [_checker(a) for a in args]
        return lambda v, path: _fixed(items, v, path)
    raise TypeError(f"unsupported type hint {hint!r}")


def _scalar(
    test: Callable[[Any], bool], expected: str, convert: Callable[[Any], Any] | None = None
) -> Checker:
    def check(value: Any, path: str) -> Any:
        if not test(value):
            raise _fail(path, expected, value)
        return value if convert is None else convert(value)

    return check


def _list(value: Any, path: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise _fail(path, "a list", value)
    return value


def _fixed(items: list[Checker], value: Any, path: str) -> tuple[Any, ...]:
    values = _list(value, path)
    if len(values) != len(items):
        raise _fail(path, f"a list of {len(items)}", value)
    return tuple(
        check(v, f"{path}[{i}]") for i, (check, v) in enumerate(zip(items, values, strict=True))
    )


def _record_checker(cls: type[Record]) -> Checker:
    hints = typing.get_type_hints(cls)
    fields = [
        (f.name, f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
    ]
    known = frozenset(name for name, _ in fields)
    name = cls.__name__

    def check(value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            raise _fail(path, f"an object ({name})", value)
        unknown = value.keys() - known
        if unknown:
            raise RecordError(f"{path or name}: unknown field {sorted(unknown)[0]!r}")
        arguments: dict[str, Any] = {}
        for field, required in fields:
            where = f"{path}.{field}" if path else field
            if field not in value:
                if required:
                    raise RecordError(f"{where}: missing")
                continue
            arguments[field] = _checker(hints[field])(value[field], where)
        try:
            return cls(**arguments)
        except ValueError as exc:
            raise RecordError(f"{path or name}: {exc}") from None

    return check
