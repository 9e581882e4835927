"""A value at a path of a YAML file, whose errors name the file, the line and the field.

:func:`load` reads YAML and remembers the line of every member (``services.web.replicas``,
``gateway.routes[0]``); a :class:`Field` walks the loaded value and turns what it finds into
typed values or an :class:`AppFileError` pointing at the member (or, when the member is
missing, at its closest parent). The app file's rules live in :mod:`mapmesh.runner.appfile`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = [
    "NAME",
    "AppFileError",
    "Field",
    "did_you_mean",
    "load",
    "parse_duration",
    "show",
    "yaml_type",
]

NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
"""Names of the app, services and versions: DNS labels, since they become host names."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_LAST_STEP = re.compile(r"(\.[^.\[]+|\[\d+\])$")


class AppFileError(Exception):
    """The app file cannot be run as written; ``field`` is the path of the offending member."""

    def __init__(self, file: str, field: str, message: str, line: int | None = None) -> None:
        self.file = file
        self.field = field
        self.message = message
        self.line = line
        where = f"{file}:{line}" if line else file
        subject = f"{field}: " if field else ""
        super().__init__(f"{where}: {subject}{message}")


def parse_duration(value: object) -> float:
    """``"500ms"``, ``"5s"``, ``"1m"``, ``"1h"`` or a number of seconds → seconds.

    Raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("expected a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (found := _DURATION.match(value)):
        seconds = float(found.group(1)) * _UNITS[found.group(2)]
    else:
        raise ValueError(f'expected a duration like "500ms", "5s", "1m" or seconds, got {value!r}')
    if seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return seconds


def load(text: str, file: str) -> Field:
    """The document in ``text`` as the root :class:`Field`; invalid YAML is an error."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise AppFileError(
            file, "", f"not valid YAML: {exc.problem or exc.context}", line
        ) from None
    except yaml.YAMLError as exc:
        raise AppFileError(file, "", f"not valid YAML: {exc}") from None
    lines: dict[str, int] = {}
    if node is not None:
        _index_lines(node, "", lines)
    return Field(file, "", data, lines)


def _index_lines(node: yaml.Node, path: str, lines: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            member = f"{path}.{key_node.value}" if path else str(key_node.value)
            lines.setdefault(member, key_node.start_mark.line + 1)
            _index_lines(value_node, member, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            member = f"{path}[{i}]"
            lines.setdefault(member, item.start_mark.line + 1)
            _index_lines(item, member, lines)


@dataclass(frozen=True, slots=True)
class Field:
    """A value at a path of the file, able to raise errors that point at it."""

    file: str
    path: str
    value: Any
    lines: Mapping[str, int]

    def fail(self, message: str) -> AppFileError:
        """An error at this field, on its line (or its closest parent's)."""
        path = self.path
        while path and path not in self.lines:
            parent = _LAST_STEP.sub("", path)
            if parent == path:
                break
            path = parent
        return AppFileError(self.file, self.path, message, self.lines.get(path))

    def child(self, key: str | int) -> Field:
        if isinstance(key, int):
            path = f"{self.path}[{key}]"
            value = self.value[key]
        else:
            path = f"{self.path}.{key}" if self.path else key
            value = self.value.get(key) if isinstance(self.value, dict) else None
        return Field(self.file, path, value, self.lines)

    @property
    def missing(self) -> bool:
        return self.value is None

    def mapping(self, allowed: Sequence[str], what: str) -> dict[str, Any]:
        if not isinstance(self.value, dict):
            raise self.fail(f"must be a mapping ({what}), not a {yaml_type(self.value)}")
        for key in self.value:
            if not isinstance(key, str) or key not in allowed:
                hint = did_you_mean(str(key), allowed)
                raise self.child(str(key)).fail(
                    f"unknown field{hint}; {what} takes {', '.join(allowed)}"
                )
        return self.value

    def string(self) -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.fail(f"must be a non-empty string, got {show(self.value)}")
        return self.value

    def name(self, what: str) -> str:
        value = self.value
        if not isinstance(value, str) or not NAME.match(value) or len(value) > 63:
            raise self.fail(
                f"{what} must be lower-case letters, digits and '-' (a DNS label, at most 63 "
                f"characters, not starting or ending with '-'), got {show(value)}"
            )
        return value

    def integer(self, low: int, high: int | None = None) -> int:
        value = self.value
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self.fail(f"must be a whole number >= {low}, got {show(value)}")
        if high is not None and value > high:
            raise self.fail(f"must be at most {high}, got {value}")
        return value

    def duration(self) -> float:
        try:
            return parse_duration(self.value)
        except ValueError as exc:
            raise self.fail(str(exc)) from None

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail(f"must be true or false, got {show(self.value)}")
        return self.value

    def strings(self) -> list[str]:
        if not isinstance(self.value, list):
            raise self.fail(f"must be a list, not a {yaml_type(self.value)}")
        return [self.child(i).string() for i in range(len(self.value))]


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def yaml_type(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return "string" if isinstance(value, str) else type(value).__name__


def show(value: object) -> str:
    return "nothing" if value is None else repr(value)
