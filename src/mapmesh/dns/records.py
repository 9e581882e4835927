"""From registry models to prebuilt DNS nodes: what each zone and service publishes.

Runs at rebuild time on the control plane's loop; everything it returns is immutable bytes
and answer objects (see :mod:`mapmesh.dns.answers`) for the query path to hand out.

A *source* (a zone's apex, or one service) publishes a :class:`Node` at each name it owns:

* a zone: SOA and NS at its apex;
* a service with a ``dns_config``: its A/AAAA/SRV/CNAME answers at ``<service>.<zone>``;
  with SRV also A/AAAA at each ``<instance-id>.<service>.<zone>`` (the SRV targets);
* empty non-terminals: every name between those and the apex, so they answer NODATA
  instead of NXDOMAIN.

Health and routing policy are decided here, once per rebuild: instances that are not
UNHEALTHY are eligible (UNKNOWN counts as healthy); when none is, the unhealthy ones are
(Route 53 answers with up to eight unhealthy records rather than none). MULTIVALUE returns
all eligible records up to 8, else a random 8 per query; WEIGHTED one random record per
query.
"""

from __future__ import annotations

import logging
import random
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from mapmesh.dns import wire
from mapmesh.dns.answers import Answer, Piece, Sections, multivalue, weighted
from mapmesh.dns.wire import QNAME_POINTER, RecordTypeCode
from mapmesh.model.registry import (
    ATTR_CNAME,
    ATTR_IPV4,
    ATTR_IPV6,
    ATTR_PORT,
    HealthStatus,
    Instance,
    Namespace,
    RecordType,
    RoutingPolicy,
    Service,
)

__all__ = ["Node", "Rank", "Zone", "service_nodes"]

log = logging.getLogger(__name__)

# SOA timers (seconds), as Route 53 hosted zones use them; ``minimum`` is the namespace's
# SOA TTL.
SOA_REFRESH = 7200
SOA_RETRY = 900
SOA_EXPIRE = 1209600
NAMESERVER_LABEL = "ns1"
HOSTMASTER_LABEL = "hostmaster"
SRV_PRIORITY = 1
SRV_WEIGHT = 1

_TYPE_CODES = {
    RecordType.A: RecordTypeCode.A,
    RecordType.AAAA: RecordTypeCode.AAAA,
    RecordType.SRV: RecordTypeCode.SRV,
    RecordType.CNAME: RecordTypeCode.CNAME,
}
# Which RRset an ANY query gets (RFC 8482: one RRset is enough).
_ANY_ORDER = (
    RecordTypeCode.A,
    RecordTypeCode.AAAA,
    RecordTypeCode.SRV,
    RecordTypeCode.SOA,
    RecordTypeCode.NS,
)
_DNS_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")


class Rank:
    """Who wins when two sources publish the same name (lower wins)."""

    APEX = 0
    SERVICE = 1
    HOST = 2  # an SRV target's per-instance name
    EMPTY = 3  # empty non-terminal


@dataclass(frozen=True, slots=True)
class Node:
    """What a name answers: an RRset per query type, ``fallback`` for every other type."""

    rank: int
    fallback: Answer  # the zone (NODATA with its SOA), or the CNAME
    rrsets: Mapping[int, Answer] = field(default_factory=dict)


class Zone:
    """A served DNS namespace: its apex and current SOA.

    The zone object lives as long as its namespace keeps the same apex; a rebuild swaps in
    new :attr:`negative` sections (one attribute assignment), so every node that falls back
    to the zone answers NODATA with the current SOA without being rebuilt itself. It is the
    NODATA :class:`~mapmesh.dns.answers.Answer` of its names, and its ``negative``
    sections are the NXDOMAIN ones.
    """

    __slots__ = ("apex", "namespace_id", "negative", "serial", "soa_ttl")

    def __init__(self, namespace_id: str, apex: bytes) -> None:
        self.namespace_id = namespace_id
        self.apex = apex  # lowercased wire form
        self.serial = 1
        self.soa_ttl = 0
        self.negative = Sections()

    @staticmethod
    def apex_of(namespace: Namespace) -> bytes:
        """The lowercased wire-form apex; ``ValueError`` when the name is not a DNS name."""
        return wire.encode_name(namespace.name.lower())

    def refresh(self, serial: int, soa_ttl: int) -> None:
        """Adopt a new serial/TTL; NODATA and NXDOMAIN answers change at once."""
        self.serial = serial
        self.soa_ttl = soa_ttl
        # Negative answers carry the SOA uncompressed: its owner is some suffix of an
        # arbitrary query name, so no prebuilt pointer could reach it.
        nameserver = wire.encode_label(NAMESERVER_LABEL) + self.apex
        hostmaster = wire.encode_label(HOSTMASTER_LABEL) + self.apex
        soa = wire.resource_record(
            self.apex, RecordTypeCode.SOA, soa_ttl, self._soa_rdata(nameserver, hostmaster)
        )
        self.negative = Sections((), (soa,))

    def apex_node(self) -> Node:
        """SOA and NS at the apex, compressed against the question name (the apex)."""
        nameserver = wire.encode_label(NAMESERVER_LABEL) + QNAME_POINTER
        hostmaster = wire.encode_label(HOSTMASTER_LABEL) + QNAME_POINTER
        soa = wire.resource_record(
            QNAME_POINTER, RecordTypeCode.SOA, self.soa_ttl, self._soa_rdata(nameserver, hostmaster)
        )
        ns = wire.resource_record(QNAME_POINTER, RecordTypeCode.NS, self.soa_ttl, nameserver)
        rrsets: dict[int, Answer] = {
            RecordTypeCode.SOA: Sections((soa,)),
            RecordTypeCode.NS: Sections((ns,)),
        }
        return Node(Rank.APEX, self, with_any(rrsets))

    def pick(self, rng: random.Random) -> Sections:
        return self.negative

    def _soa_rdata(self, nameserver: bytes, hostmaster: bytes) -> bytes:
        return wire.soa_rdata(
            nameserver,
            hostmaster,
            serial=self.serial,
            refresh=SOA_REFRESH,
            retry=SOA_RETRY,
            expire=SOA_EXPIRE,
            minimum=self.soa_ttl,
        )

    def __repr__(self) -> str:
        return f"Zone({self.namespace_id!r}, serial={self.serial})"


def with_any(rrsets: dict[int, Answer]) -> dict[int, Answer]:
    """Add the RFC 8482 answer to ANY: the first RRset the name has."""
    for rtype in _ANY_ORDER:
        if rtype in rrsets:
            rrsets[RecordTypeCode.ANY] = rrsets[rtype]
            break
    return rrsets


# -- services ------------------------------------------------------------------------------


def service_nodes(zone: Zone, service: Service, instances: Iterable[Instance]) -> dict[bytes, Node]:
    """Every node ``service`` publishes in ``zone`` (empty when it publishes nothing)."""
    config = service.dns_config
    if config is None:
        return {}
    try:
        name = wire.encode_name(service.name.lower())[:-1] + zone.apex
        if len(name) > wire.MAX_NAME_LEN:
            raise ValueError("name too long")
    except ValueError as exc:
        log.warning("service %s: no DNS records: %s", service.id, exc)
        return {}
    ttls = {record.type: record.ttl for record in config.dns_records}
    ordered = sorted(instances, key=lambda i: i.id)
    build = _Builder(zone, name, ttls, config.routing_policy, ordered)
    nodes = build.nodes()
    _add_empty_non_terminals(nodes, zone)
    return nodes


@dataclass
class _Builder:
    zone: Zone
    name: bytes
    ttls: dict[RecordType, int]
    policy: RoutingPolicy
    instances: list[Instance]
    addresses: dict[str, dict[RecordType, bytes]] = field(init=False)

    def __post_init__(self) -> None:
        self.addresses = {i.id: _addresses(i) for i in self.instances}

    def nodes(self) -> dict[bytes, Node]:
        if RecordType.CNAME in self.ttls:
            return self._cname_nodes()
        rrsets: dict[int, Answer] = {}
        for rtype in (RecordType.A, RecordType.AAAA):
            if rtype in self.ttls:
                self._add(rrsets, rtype, self._address_piece(rtype, self.ttls[rtype]))
        nodes: dict[bytes, Node] = {}
        if RecordType.SRV in self.ttls:
            srv = {i.id: p for i in self.instances if (p := self._srv_piece(i)) is not None}
            self._add(rrsets, RecordType.SRV, lambda i: srv.get(i.id))
            nodes.update(self._host_nodes(i for i in self.instances if i.id in srv))
        nodes[self.name] = Node(Rank.SERVICE, self.zone, with_any(rrsets))
        return nodes

    def _add(
        self,
        rrsets: dict[int, Answer],
        rtype: RecordType,
        piece_of: Callable[[Instance], Piece | None],
    ) -> None:
        healthy: list[Piece] = []
        unhealthy: list[Piece] = []
        for instance in self.instances:
            piece = piece_of(instance)
            if piece is None:
                continue
            bucket = unhealthy if instance.health_status is HealthStatus.UNHEALTHY else healthy
            bucket.append(piece)
        eligible = healthy or unhealthy
        if eligible:
            choose = weighted if self.policy is RoutingPolicy.WEIGHTED else multivalue
            rrsets[_TYPE_CODES[rtype]] = choose(eligible)

    def _cname_nodes(self) -> dict[bytes, Node]:
        if self.policy is not RoutingPolicy.WEIGHTED:
            log.debug("CNAME records need WEIGHTED routing; none published")
            return {self.name: Node(Rank.SERVICE, self.zone)}
        ttl = self.ttls[RecordType.CNAME]
        rrsets: dict[int, Answer] = {}
        self._add(rrsets, RecordType.CNAME, lambda i: self._cname_piece(i, ttl))
        cname = rrsets.get(RecordTypeCode.CNAME)
        if cname is None:
            return {self.name: Node(Rank.SERVICE, self.zone)}
        # A name with a CNAME has no other data: every type gets the CNAME.
        return {self.name: Node(Rank.SERVICE, cname)}

    def _address_piece(self, rtype: RecordType, ttl: int) -> Callable[[Instance], Piece | None]:
        def piece(instance: Instance) -> Piece | None:
            rdata = self.addresses[instance.id].get(rtype)
            if rdata is None:
                return None
            return Piece(wire.resource_record(QNAME_POINTER, _TYPE_CODES[rtype], ttl, rdata))

        return piece

    def _cname_piece(self, instance: Instance, ttl: int) -> Piece | None:
        target = instance.attributes.get(ATTR_CNAME)
        if not target:
            return _skip(instance, f"no {ATTR_CNAME}")
        try:
            rdata = wire.encode_name(target)
        except ValueError:
            return _skip(instance, f"{ATTR_CNAME} {target!r} is not a DNS name")
        return Piece(wire.resource_record(QNAME_POINTER, RecordTypeCode.CNAME, ttl, rdata))

    def _srv_piece(self, instance: Instance) -> Piece | None:
        if _DNS_LABEL.match(instance.id) is None:
            return _skip(instance, "instance id is not a DNS label, no SRV record")
        if len(instance.id) + 1 + len(self.name) > wire.MAX_NAME_LEN:
            return _skip(instance, "per-instance name longer than 255 octets, no SRV record")
        raw_port = instance.attributes.get(ATTR_PORT, "")
        if not (raw_port.isascii() and raw_port.isdigit() and int(raw_port) <= 0xFFFF):
            return _skip(instance, f"no valid {ATTR_PORT}, no SRV record")
        port = int(raw_port)
        glue = self._glue(instance)
        if not glue:
            return _skip(instance, "no address attribute, no SRV record")
        target = wire.encode_label(instance.id) + QNAME_POINTER
        rdata = wire.srv_rdata(SRV_PRIORITY, SRV_WEIGHT, port, target)
        ttl = self.ttls[RecordType.SRV]
        return Piece(wire.resource_record(QNAME_POINTER, RecordTypeCode.SRV, ttl, rdata), glue)

    def _glue(self, instance: Instance) -> tuple[bytes, ...]:
        """A/AAAA for the SRV target, owner compressed against the question name."""
        owner = wire.encode_label(instance.id) + QNAME_POINTER
        return tuple(
            wire.resource_record(owner, _TYPE_CODES[rtype], self._host_ttl(rtype), rdata)
            for rtype, rdata in self.addresses[instance.id].items()
        )

    def _host_ttl(self, rtype: RecordType) -> int:
        return self.ttls.get(rtype, self.ttls[RecordType.SRV])

    def _host_nodes(self, instances: Iterable[Instance]) -> dict[bytes, Node]:
        """A/AAAA at ``<instance-id>.<service>.<zone>``, the names SRV records point at."""
        nodes: dict[bytes, Node] = {}
        for instance in instances:
            host = wire.encode_label(instance.id.lower()) + self.name
            rrsets: dict[int, Answer] = {}
            for rtype, rdata in self.addresses[instance.id].items():
                code = _TYPE_CODES[rtype]
                ttl = self._host_ttl(rtype)
                rrsets[code] = Sections((wire.resource_record(QNAME_POINTER, code, ttl, rdata),))
            nodes[host] = Node(Rank.HOST, self.zone, with_any(rrsets))
        return nodes


_ADDRESS_ATTRIBUTES = (
    (RecordType.A, ATTR_IPV4, socket.AF_INET),
    (RecordType.AAAA, ATTR_IPV6, socket.AF_INET6),
)


def _addresses(instance: Instance) -> dict[RecordType, bytes]:
    """The packed A and AAAA rdata of an instance (unparsable addresses logged and left out)."""
    found: dict[RecordType, bytes] = {}
    for rtype, attribute, family in _ADDRESS_ATTRIBUTES:
        text = instance.attributes.get(attribute)
        if text is None:
            continue
        try:
            found[rtype] = socket.inet_pton(family, text)
        except (OSError, ValueError):
            _skip(instance, f"{attribute} {text!r} is not an address")
    return found


def _skip(instance: Instance, reason: str) -> Piece | None:
    """Log why ``instance`` gets no record; returns None for the caller to return."""
    log.debug("instance %s of service %s skipped: %s", instance.id, instance.service_id, reason)
    return None


def _add_empty_non_terminals(nodes: dict[bytes, Node], zone: Zone) -> None:
    """Every name between a published name and the apex exists (RFC 8020), with no data."""
    for name in list(nodes):
        parent = name[1 + name[0] :]
        while len(parent) > len(zone.apex) and parent not in nodes:
            nodes[parent] = Node(Rank.EMPTY, zone)
            parent = parent[1 + parent[0] :]
