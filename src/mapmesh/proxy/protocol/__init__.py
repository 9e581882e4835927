"""The proxy's codecs: bytes from a peer in, mapmesh stream events out, and back.

``events`` is the vocabulary the router sees; ``http1_server`` reads downstream requests,
``http1_client`` reads upstream responses, ``http1`` holds the shared framing and the
serialisers, ``headers`` the hop-by-hop rules. HTTP/2 and gRPC will be one more codec file
producing the same events. See ``docs/http1-codec.md``.
"""

from mapmesh.proxy.protocol.events import (
    Body,
    ConnectionClosed,
    EndBody,
    Event,
    Fields,
    InformationalResponse,
    ProtocolError,
    RequestHead,
    ResponseHead,
)
from mapmesh.proxy.protocol.headers import HOP_BY_HOP, get_field, get_fields, header_map
from mapmesh.proxy.protocol.http1 import (
    CONTINUE_100,
    DEFAULT_MAX_HEAD_SIZE,
    LAST_CHUNK,
    ResponsePlan,
    encode_chunk,
    last_chunk,
    local_response,
    request_head_bytes,
    response_head_bytes,
)
from mapmesh.proxy.protocol.http1_client import CLOSED_BEFORE_RESPONSE, Http1ClientCodec
from mapmesh.proxy.protocol.http1_server import Http1ServerCodec

__all__ = [
    "CLOSED_BEFORE_RESPONSE",
    "CONTINUE_100",
    "DEFAULT_MAX_HEAD_SIZE",
    "HOP_BY_HOP",
    "LAST_CHUNK",
    "Body",
    "ConnectionClosed",
    "EndBody",
    "Event",
    "Fields",
    "Http1ClientCodec",
    "Http1ServerCodec",
    "InformationalResponse",
    "ProtocolError",
    "RequestHead",
    "ResponseHead",
    "ResponsePlan",
    "encode_chunk",
    "get_field",
    "get_fields",
    "header_map",
    "last_chunk",
    "local_response",
    "request_head_bytes",
    "response_head_bytes",
]
