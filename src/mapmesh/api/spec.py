"""AWS service models (botocore's service-2.json) as the wire spec of our APIs.

The same model file that boto3 uses to serialise a request is what we validate it against,
so the constraints a client sees (required members, lengths, patterns, enums, ranges) are
exactly AWS's, and the responses we send carry only the members the model defines, in the
types it declares. Validation errors name the member path: ``DnsConfig.DnsRecords[0].TTL``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["OperationSpec", "ServiceSpec", "ValidationFailed", "load_spec"]


class ValidationFailed(Exception):
    """The input does not satisfy the model; ``message`` is AWS-style and names the field."""

    def __init__(self, problems: list[str]) -> None:
        count = len(problems)
        noun = "error" if count == 1 else "errors"
        super().__init__(f"{count} validation {noun} detected: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class OperationSpec:
    name: str
    input_shape: str | None
    output_shape: str | None
    errors: frozenset[str]
    # the REST binding (rest-json / rest-xml models); RPC protocols leave the defaults
    http_method: str = "POST"
    request_uri: str = "/"
    response_code: int = 200


class ServiceSpec:
    def __init__(self, model: dict[str, Any]) -> None:
        self.metadata: dict[str, Any] = model["metadata"]
        self.shapes: dict[str, dict[str, Any]] = model["shapes"]
        self.operations = {
            name: OperationSpec(
                name=name,
                input_shape=op.get("input", {}).get("shape"),
                output_shape=op.get("output", {}).get("shape"),
                errors=frozenset(e["shape"] for e in op.get("errors", [])),
                http_method=op.get("http", {}).get("method", "POST"),
                request_uri=op.get("http", {}).get("requestUri", "/"),
                response_code=int(op.get("http", {}).get("responseCode", 200)),
            )
            for name, op in model["operations"].items()
        }
        self._patterns: dict[str, re.Pattern[str]] = {}

    def error_status(self, code: str) -> int:
        shape = self.shapes.get(code, {})
        status = shape.get("error", {}).get("httpStatusCode")
        return int(status) if status is not None else 400

    # -- input ---------------------------------------------------------------------------

    def validate_input(self, operation: OperationSpec, params: Any) -> dict[str, Any]:
        if operation.input_shape is None:
            return {}
        problems: list[str] = []
        if not isinstance(params, dict):
            raise ValidationFailed(["the request body must be an object"])
        self._check(operation.input_shape, params, "", problems)
        if problems:
            raise ValidationFailed(problems[:10])
        return params

    def _pattern(self, pattern: str) -> re.Pattern[str]:
        compiled = self._patterns.get(pattern)
        if compiled is None:
            compiled = self._patterns[pattern] = re.compile(pattern)
        return compiled

    def _check(self, shape_name: str, value: Any, path: str, problems: list[str]) -> None:
        shape = self.shapes[shape_name]
        kind = shape["type"]
        where = path or "request"
        if kind == "structure":
            if not isinstance(value, dict):
                problems.append(f"{where}: must be an object")
                return
            members = shape.get("members", {})
            for required in shape.get("required", []):
                if value.get(required) is None:
                    problems.append(f"{_join(path, required)}: member is required")
            if shape.get("union") and sum(v is not None for v in value.values()) != 1:
                problems.append(f"{where}: set exactly one of {', '.join(sorted(members))}")
            for key, member_value in value.items():
                member = members.get(key)
                if member is None:
                    problems.append(f"{_join(path, key)}: unknown member")
                elif member_value is not None:
                    self._check(member["shape"], member_value, _join(path, key), problems)
        elif kind == "list":
            if not isinstance(value, list):
                problems.append(f"{where}: must be a list")
                return
            self._check_size(shape, len(value), where, "items", problems)
            for index, item in enumerate(value):
                self._check(shape["member"]["shape"], item, f"{path}[{index}]", problems)
        elif kind == "map":
            if not isinstance(value, dict):
                problems.append(f"{where}: must be a map")
                return
            self._check_size(shape, len(value), where, "entries", problems)
            for key, item in value.items():
                self._check(shape["key"]["shape"], key, f"{where} key {key!r}", problems)
                self._check(shape["value"]["shape"], item, f"{path}.{key}", problems)
        elif kind == "string":
            self._check_string(shape, value, where, problems)
        elif kind in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{where}: must be an integer")
                return
            if "min" in shape and value < shape["min"]:
                problems.append(f"{where}: must be greater than or equal to {shape['min']}")
            if "max" in shape and value > shape["max"]:
                problems.append(f"{where}: must be less than or equal to {shape['max']}")
        elif kind in _SCALARS:
            types, noun = _SCALARS[kind]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                problems.append(f"{where}: must be {noun}")

    def _check_string(
        self, shape: dict[str, Any], value: Any, where: str, problems: list[str]
    ) -> None:
        if not isinstance(value, str):
            problems.append(f"{where}: must be a string")
            return
        self._check_size(shape, len(value), where, "characters", problems)
        if "enum" in shape and value not in shape["enum"]:
            problems.append(f"{where}: value {value!r} must be one of [{', '.join(shape['enum'])}]")
        pattern = shape.get("pattern")
        if pattern is not None and not self._pattern(pattern).search(value):
            problems.append(
                f"{where}: value {value!r} must satisfy regular expression pattern: {pattern}"
            )

    @staticmethod
    def _check_size(
        shape: dict[str, Any], size: int, where: str, unit: str, problems: list[str]
    ) -> None:
        if "min" in shape and size < shape["min"]:
            problems.append(f"{where}: must have at least {shape['min']} {unit}")
        if "max" in shape and size > shape["max"]:
            problems.append(f"{where}: must have at most {shape['max']} {unit}")

    # -- output --------------------------------------------------------------------------

    def shape_output(self, shape_name: str | None, value: Any) -> Any:
        """Keep only modeled members, in the model's types (timestamps as aware datetimes)."""
        if shape_name is None:
            return {}
        return self._shape(shape_name, value)

    def _shape(self, shape_name: str, value: Any) -> Any:
        shape = self.shapes[shape_name]
        kind = shape["type"]
        if kind == "structure":
            members = shape.get("members", {})
            out: dict[str, Any] = {}
            for key, member in members.items():
                member_value = value.get(key) if isinstance(value, dict) else None
                if member_value is not None:
                    out[key] = self._shape(member["shape"], member_value)
            return out
        if kind == "list":
            return [self._shape(shape["member"]["shape"], item) for item in value]
        if kind == "map":
            return {str(k): self._shape(shape["value"]["shape"], v) for k, v in value.items()}
        if kind == "timestamp":
            if isinstance(value, datetime):
                return value if value.tzinfo else value.replace(tzinfo=UTC)
            return datetime.fromtimestamp(float(value), UTC)
        if kind == "string":
            return value.value if isinstance(value, Enum) else str(value)
        if kind in ("integer", "long"):
            return int(value)
        return value


_SCALARS: dict[str, tuple[tuple[type, ...], str]] = {
    "boolean": ((bool,), "a boolean"),
    "timestamp": ((int, float, datetime), "a timestamp"),
    "double": ((int, float), "a number"),
    "float": ((int, float), "a number"),
}


def _join(path: str, member: str) -> str:
    return f"{path}.{member}" if path else member


@cache
def load_spec(name: str) -> ServiceSpec:
    """Load a vendored service model, e.g. ``servicediscovery-2017-03-14``."""
    text = resources.files("mapmesh.api").joinpath("specs", f"{name}.json").read_text()
    return ServiceSpec(json.loads(text))
