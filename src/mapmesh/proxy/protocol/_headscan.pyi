# The C searches of _headscan.c (documented there); headers.py is their specification.

FoundFields = tuple[
    bytes | None,  # host
    int,  # host_count
    bytes | None,  # content_length
    bytes | None,  # request_id
    bytes | None,  # traceparent
    bytes | None,  # amzn_trace_id
    bytes | None,  # expect (lower-cased)
    int,  # Connection options: 1 keep-alive, 2 close, 4 upgrade
    tuple[bytes, ...],  # transfer_encoding (lower-cased)
    bytes | None,  # upgrade
    bool,  # ambiguous
    list[tuple[int, int]] | tuple[()],  # spans
]

def find_head_end(buf: bytes | bytearray, start: int, /) -> int: ...
def find_line_end(buf: bytes | bytearray, start: int, /) -> int: ...
def scan_fields(head: bytes, start: int, /) -> FoundFields | None: ...
