"""AWS's RPC wire protocols for Cloud Map: JSON 1.1 and Smithy RPC v2 CBOR.

Current boto3 speaks RPC v2 CBOR to Cloud Map (``POST /service/<target>/operation/<Op>``,
``smithy-protocol: rpc-v2-cbor``); the aws CLI and older SDKs speak JSON 1.1
(``POST /`` with ``X-Amz-Target: <target>.<Op>``). Both carry the same parameters, so this
module only turns bytes into a parameter dict and a result or error back into bytes; the
operation handlers never see which protocol was used. Neither protocol routes on the Host
header (boto3 prefixes it with ``data-`` for discovery calls).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import cbor2

__all__ = ["CBOR", "JSON11", "WireCodec", "WireError", "region_from_authorization"]


class WireError(Exception):
    """An error in the wire format itself (before any operation ran)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class WireCodec(Protocol):
    @property
    def content_type(self) -> str: ...

    @property
    def extra_headers(self) -> dict[str, str]: ...

    def decode(self, body: bytes) -> Any: ...

    def encode(self, value: dict[str, Any]) -> bytes: ...

    def encode_error(self, code: str, message: str, fields: dict[str, Any]) -> bytes: ...


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(f"cannot encode {type(value).__name__}")


@dataclass(frozen=True)
class _Json11:
    content_type: str = "application/x-amz-json-1.1"

    @property
    def extra_headers(self) -> dict[str, str]:
        return {}

    def decode(self, body: bytes) -> Any:
        if not body.strip():
            return {}
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise WireError("SerializationException", f"request body is not JSON: {exc}") from None

    def encode(self, value: dict[str, Any]) -> bytes:
        return json.dumps(value, default=_json_default, separators=(",", ":")).encode()

    def encode_error(self, code: str, message: str, fields: dict[str, Any]) -> bytes:
        return self.encode({"__type": code, "Message": message, **fields})


@dataclass(frozen=True)
class _Cbor:
    content_type: str = "application/cbor"

    @property
    def extra_headers(self) -> dict[str, str]:
        return {"smithy-protocol": "rpc-v2-cbor"}

    def decode(self, body: bytes) -> Any:
        if not body:
            return {}
        try:
            value = cbor2.loads(body)
        except Exception as exc:  # cbor2 raises several unrelated types on bad input
            raise WireError("SerializationException", f"request body is not CBOR: {exc}") from None
        return _plain(value)

    def encode(self, value: dict[str, Any]) -> bytes:
        return bytes(cbor2.dumps(_for_cbor(value)))

    def encode_error(self, code: str, message: str, fields: dict[str, Any]) -> bytes:
        return self.encode({"__type": code, "Message": message, **fields})


def _for_cbor(value: Any) -> Any:
    """Timestamps go out as CBOR tag 1 (epoch seconds), which botocore expects."""
    if isinstance(value, dict):
        return {k: _for_cbor(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_for_cbor(v) for v in value]
    if isinstance(value, datetime):
        seconds = value.timestamp()
        return cbor2.CBORTag(1, int(seconds) if seconds == math.floor(seconds) else seconds)
    return value


def _plain(value: Any) -> Any:
    """Decoded CBOR to plain Python values (tag 1 to an aware datetime)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, cbor2.CBORTag) and value.tag == 1:
        return datetime.fromtimestamp(float(value.value), UTC)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


JSON11: WireCodec = _Json11()
CBOR: WireCodec = _Cbor()


def region_from_authorization(header: str | None, default: str) -> str:
    """The region of a SigV4 ``Authorization`` header's credential scope."""
    if not header:
        return default
    marker = "Credential="
    start = header.find(marker)
    if start < 0:
        return default
    scope = header[start + len(marker) :].split(",", 1)[0].split("/")
    return scope[2] if len(scope) >= 5 and scope[2] else default
