"""DNS wire format: the few pieces mapmesh encodes and parses by hand.

Why by hand: the query path must not build a message object per query (a DNS library per
query reached 3% of NSD's throughput; patching prebuilt bytes reached ~50%). So this module
offers two kinds of helpers, both pure functions without I/O:

* encoders used at rebuild time: names, resource records and their rdata, the OPT record;
* the slow-path replies of the query path: errors (FORMERR, NOTIMP, REFUSED, BADVERS),
  negative answers and truncation, plus the EDNS0 parser.

Every prebuilt record refers to names only through compression pointers into the question
(which always starts at offset 12), never into other records, so prebuilt records can be
concatenated in any order and any subset without re-encoding. That is what lets MULTIVALUE
pick 8 of N records per query with one ``join``.
"""

from __future__ import annotations

import struct

__all__ = [
    "CLASSIC_UDP_PAYLOAD",
    "CLASS_IN",
    "EDNS_PAYLOAD",
    "HEADER_LEN",
    "MAX_NAME_LEN",
    "MAX_UDP_PAYLOAD",
    "QNAME_POINTER",
    "Edns",
    "FormatError",
    "Rcode",
    "RecordTypeCode",
    "encode_label",
    "encode_name",
    "error_reply",
    "opt_record",
    "parse_edns",
    "pointer",
    "reply",
    "resource_record",
    "skip_name",
    "soa_rdata",
    "srv_rdata",
]

HEADER_LEN = 12
QNAME_OFFSET = HEADER_LEN
QNAME_POINTER = b"\xc0\x0c"  # compression pointer to the question name at offset 12
CLASSIC_UDP_PAYLOAD = 512  # RFC 1035 limit without EDNS0
EDNS_PAYLOAD = 1232  # what we advertise (DNS flag day 2020)
MAX_UDP_PAYLOAD = 4096  # the most we send over UDP whatever the client advertises
MAX_NAME_LEN = 255
MAX_LABEL_LEN = 63
CLASS_IN = 1

_RR_FIXED = struct.Struct(">HHIH")  # type, class, ttl, rdlength
_COUNTS = struct.Struct(">HHHH")  # qdcount, ancount, nscount, arcount
_SRV = struct.Struct(">HHH")
_SOA_TIMERS = struct.Struct(">IIIII")
_ONLY_ONE_ADDITIONAL = b"\x00\x00\x00\x00\x00\x01"
_ROOT_OPT = b"\x00\x00\x29"  # root owner name, TYPE 41


class RecordTypeCode:
    """The numeric QTYPE/TYPE values mapmesh deals with."""

    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    AAAA = 28
    SRV = 33
    OPT = 41
    IXFR = 251
    AXFR = 252
    ANY = 255


class Rcode:
    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    BADVERS = 16  # extended: upper 8 bits travel in the OPT record


class FormatError(ValueError):
    """The client sent a message we cannot parse (answered with FORMERR)."""


# What a query's OPT record asked for: (UDP payload size, EDNS version, DO bit). A plain
# tuple because building a NamedTuple per query cost ~10% of the EDNS query path.
Edns = tuple[int, int, bool]


# -- names ---------------------------------------------------------------------------------


def encode_label(text: str) -> bytes:
    """One label in wire form (length byte + ASCII); ``ValueError`` when it cannot be one."""
    raw = text.encode("ascii")
    if not 0 < len(raw) <= MAX_LABEL_LEN or b"." in raw:
        raise ValueError(f"not a DNS label: {text!r}")
    return bytes((len(raw),)) + raw


def encode_name(text: str) -> bytes:
    """An absolute name (``svc.corp`` or ``svc.corp.``) in uncompressed wire form."""
    stripped = text[:-1] if text.endswith(".") else text
    if not stripped:
        return b"\x00"
    wire = b"".join(encode_label(label) for label in stripped.split(".")) + b"\x00"
    if len(wire) > MAX_NAME_LEN:
        raise ValueError(f"name longer than {MAX_NAME_LEN} octets: {text!r}")
    return wire


def pointer(offset: int) -> bytes:
    """A compression pointer to ``offset`` in the message."""
    if not 0 <= offset < 0x4000:
        raise ValueError(f"compression pointer out of range: {offset}")
    return struct.pack(">H", 0xC000 | offset)


# -- records -------------------------------------------------------------------------------


def resource_record(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    """One class-IN resource record; ``owner`` is wire form (often :data:`QNAME_POINTER`)."""
    return owner + _RR_FIXED.pack(rtype, CLASS_IN, ttl, len(rdata)) + rdata


def srv_rdata(priority: int, weight: int, port: int, target: bytes) -> bytes:
    return _SRV.pack(priority, weight, port) + target


def soa_rdata(
    mname: bytes,
    rname: bytes,
    *,
    serial: int,
    refresh: int,
    retry: int,
    expire: int,
    minimum: int,
) -> bytes:
    return mname + rname + _SOA_TIMERS.pack(serial, refresh, retry, expire, minimum)


def opt_record(*, dnssec_ok: bool = False, extended_rcode: int = 0) -> bytes:
    """Our OPT pseudo-record: payload :data:`EDNS_PAYLOAD`, version 0, no options."""
    ttl = (extended_rcode >> 4) << 24 | (0x8000 if dnssec_ok else 0)
    return b"\x00" + struct.pack(">HHIH", RecordTypeCode.OPT, EDNS_PAYLOAD, ttl, 0)


# -- parsing -------------------------------------------------------------------------------


def skip_name(message: bytes, offset: int) -> int:
    """The offset just past the (possibly compressed) name at ``offset``."""
    while True:
        if offset >= len(message):
            raise FormatError("name runs past the end of the message")
        length = message[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            if offset + 2 > len(message):
                raise FormatError("truncated compression pointer")
            return offset + 2
        if length > MAX_LABEL_LEN:
            raise FormatError("unknown label type")
        offset += 1 + length


def parse_edns(message: bytes, offset: int) -> Edns | None:
    """Find the OPT record among the records that follow the question at ``offset``.

    Raises :class:`FormatError` for truncated records, an OPT outside the additional
    section, a second OPT or an OPT whose owner is not the root (RFC 6891 6.1.1).
    """
    if message[6:12] == _ONLY_ONE_ADDITIONAL and message[offset : offset + 3] == _ROOT_OPT:
        # The usual EDNS query: nothing but one OPT record, right after the question.
        end = offset + 11
        if len(message) >= end and len(message) >= end + (message[end - 2] << 8 | message[end - 1]):
            payload = message[offset + 3] << 8 | message[offset + 4]
            return payload, message[offset + 6], bool(message[offset + 7] & 0x80)
    ancount, nscount, arcount = struct.unpack_from(">HHH", message, 6)
    first_additional = ancount + nscount
    edns: Edns | None = None
    for index in range(first_additional + arcount):
        owner = offset
        offset = skip_name(message, offset)
        if offset + _RR_FIXED.size > len(message):
            raise FormatError("truncated resource record")
        rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(message, offset)
        offset += _RR_FIXED.size + rdlength
        if offset > len(message):
            raise FormatError("truncated rdata")
        if rtype != RecordTypeCode.OPT:
            continue
        if index < first_additional or edns is not None or message[owner] != 0:
            raise FormatError("misplaced OPT record")
        edns = (rclass, (ttl >> 16) & 0xFF, bool(ttl & 0x8000))
    return edns


# -- replies -------------------------------------------------------------------------------


def reply(
    query: bytes,
    *,
    rcode: int,
    authoritative: bool,
    question: bytes = b"",
    counts: tuple[int, int, int] = (0, 0, 0),
    sections: bytes = b"",
    opt: bytes = b"",
    truncated: bool = False,
) -> bytes:
    """A reply to ``query`` (id, opcode and RD copied) for the query path's slower cases.

    ``counts`` are the answer/authority/additional counts of ``sections``; ``opt`` is
    appended to the additional section when given.
    """
    flags2 = 0x80 | (query[2] & 0x79)  # QR + opcode + RD
    if authoritative:
        flags2 |= 0x04
    if truncated:
        flags2 |= 0x02
    ancount, nscount, arcount = counts
    header = query[:2] + bytes((flags2, rcode & 0x0F))
    header += _COUNTS.pack(1 if question else 0, ancount, nscount, arcount + (1 if opt else 0))
    return b"".join((header, question, sections, opt))


def error_reply(query: bytes, rcode: int, question: bytes = b"", opt: bytes = b"") -> bytes:
    """A non-authoritative error reply without records (FORMERR, NOTIMP, REFUSED)."""
    return reply(query, rcode=rcode, authoritative=False, question=question, opt=opt)
