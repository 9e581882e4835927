"""The DNS answer table: prebuilt replies per name, rebuilt per service, read per query.

Theory of operation
-------------------
Two threads share one :class:`DnsTable`:

* the **control plane's loop** calls :meth:`DnsTable.rebuild` after each registry batch,
  with the namespaces and services that batch touched;
* the **DNS thread** calls :meth:`DnsTable.answer` for every query.

*Data.* ``_names`` maps a lowercased wire-form name to a :class:`~mapmesh.dns.records.Node`:
per query type an answer whose records are already encoded (owner names are compression
pointers into the question, so the bytes fit any reply), and a ``fallback`` for every
other type — the zone's NODATA, or the name's CNAME. ``_zones`` maps each apex to its
:class:`~mapmesh.dns.records.Zone`, used only for misses (NXDOMAIN vs REFUSED).

*Rebuild.* A *source* is a zone apex (``ns:<id>``) or a service (``svc:<id>``). Each
source's nodes are built completely first, then installed name by name; when two sources
publish one name, the lowest :class:`~mapmesh.dns.records.Rank` wins (apex, service name,
SRV target, empty non-terminal), ties broken by source key. Only the sources in the change
are rebuilt (all on ``reset``), and each zone they touch gets a new SOA serial (the view's
revision).

*Consistency without locks.* Nodes, answers and sections are immutable; a rebuild
replaces them with single dict assignments or one attribute assignment (``Zone.negative``),
which the GIL makes atomic. A reader therefore sees, for any one name, either the old or
the new answer, never a mix; two names of one service may briefly disagree (like two
authoritative servers during a zone transfer).

*Query path.* :meth:`DnsTable.answer` parses the header and the single question by hand,
looks up ``(name, type)`` and joins id + flags + counts + the client's own question bytes
(so its case is preserved) + the prebuilt sections: two dict lookups and one ``join``.
Everything unusual (errors, EDNS, misses, truncation) leaves the fast path for helpers in
:mod:`mapmesh.dns.wire`.

Costs: ``answer`` is O(length of the name); ``rebuild`` is O(instances of the changed
services) plus O(namespaces) when namespaces changed.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Protocol

from mapmesh.dns import wire
from mapmesh.dns.answers import Sections
from mapmesh.dns.records import Node, Zone, service_nodes
from mapmesh.dns.wire import CLASS_IN, HEADER_LEN, MAX_UDP_PAYLOAD, Rcode, RecordTypeCode
from mapmesh.model.registry import Instance, Namespace, Service

__all__ = ["DnsTable", "RegistryChange", "RegistryModel", "TableStatistics"]

log = logging.getLogger(__name__)

_QD_ONE = b"\x00\x01"
_NO_RECORDS = b"\x00\x00\x00\x00\x00\x00"
# Second/third header bytes of an authoritative NOERROR reply, indexed by the query's RD bit.
_AUTHORITATIVE_FLAGS = (b"\x84\x00", b"\x85\x00")
_OPT = (wire.opt_record(dnssec_ok=False), wire.opt_record(dnssec_ok=True))
_OPT_BADVERS = wire.opt_record(extended_rcode=Rcode.BADVERS)
_REFUSED_TYPES = frozenset((RecordTypeCode.AXFR, RecordTypeCode.IXFR))


class RegistryModel(Protocol):
    """The registry data DNS is built from (:class:`~mapmesh.registry.view.RegistryView`)."""

    @property
    def namespaces(self) -> Mapping[str, Namespace]: ...

    @property
    def services(self) -> Mapping[str, Service]: ...

    def instances_of(self, service_id: str) -> Mapping[str, Instance]: ...


class RegistryChange(Protocol):
    """What changed (:class:`~mapmesh.registry.view.ViewChange`)."""

    @property
    def revision(self) -> int: ...

    @property
    def namespaces(self) -> Set[str]: ...

    @property
    def services(self) -> Set[str]: ...

    @property
    def reset(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class TableStatistics:
    zones: int
    names: int
    rebuilds: int


class DnsTable:
    """Prebuilt DNS answers for every DNS namespace; see the module docstring."""

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()
        self._names: dict[bytes, Node] = {}
        self._zones: dict[bytes, Zone] = {}
        # Rebuild bookkeeping (control-plane loop only).
        self._zone_of_namespace: dict[str, Zone] = {}
        self._service_namespace: dict[str, str] = {}
        self._published: dict[bytes, dict[str, Node]] = {}  # name -> source -> node
        self._names_of_source: dict[str, set[bytes]] = {}
        self._unserved: dict[str, str] = {}  # namespace id -> why it has no zone (logged once)
        self._rebuilds = 0

    def statistics(self) -> TableStatistics:
        return TableStatistics(
            zones=len(self._zones), names=len(self._names), rebuilds=self._rebuilds
        )

    # -- rebuild (control-plane loop) ----------------------------------------------------

    def rebuild(self, model: RegistryModel, change: RegistryChange) -> None:
        """Rebuild the zones and services ``change`` names (everything on ``reset``)."""
        serial = change.revision % 2**32 or 1
        if change.reset:
            namespaces = set(model.namespaces) | set(self._zone_of_namespace)
            services = set(model.services) | set(self._service_namespace)
        else:
            namespaces, services = set(change.namespaces), set(change.services)
        elected: dict[str, bytes] = {}
        if namespaces:  # which namespaces are zones can only change with a namespace
            elected = self._elect(model)
            namespaces |= {
                namespace_id
                for namespace_id in elected.keys() | self._zone_of_namespace.keys()
                if elected.get(namespace_id) != self._apex_of(namespace_id)
            }
        for namespace_id in namespaces:
            services |= self._rebuild_zone(model, namespace_id, elected.get(namespace_id), serial)
        touched: set[str] = set()
        for service_id in services:
            try:
                touched |= self._rebuild_service(model, service_id)
            except Exception:  # one broken service must not take the others' DNS down
                log.exception(
                    "DNS rebuild of service %s failed; it keeps its old answers", service_id
                )
        for namespace_id in touched - namespaces:
            self._refresh_zone(model, namespace_id, serial)
        self._rebuilds += 1

    def _elect(self, model: RegistryModel) -> dict[str, bytes]:
        """Namespace id -> apex for every DNS namespace that gets a zone.

        Two namespaces with one name (private namespaces in different VPCs) cannot both
        be served from one table: the oldest wins, and the other is logged and ignored.
        """
        elected: dict[str, bytes] = {}
        owners: dict[bytes, str] = {}
        unserved: dict[str, str] = {}
        ordered = sorted(model.namespaces.values(), key=lambda n: (n.create_date, n.id))
        for namespace in (n for n in ordered if n.is_dns):
            try:
                apex = Zone.apex_of(namespace)
            except ValueError as exc:
                unserved[namespace.id] = str(exc)
                continue
            if apex in owners:
                unserved[namespace.id] = f"its name is already served for {owners[apex]}"
                continue
            owners[apex] = namespace.id
            elected[namespace.id] = apex
        for namespace_id in unserved.keys() - self._unserved.keys():
            log.warning("namespace %s gets no DNS: %s", namespace_id, unserved[namespace_id])
        self._unserved = unserved
        return elected

    def _apex_of(self, namespace_id: str) -> bytes | None:
        zone = self._zone_of_namespace.get(namespace_id)
        return zone.apex if zone is not None else None

    def _rebuild_zone(
        self, model: RegistryModel, namespace_id: str, apex: bytes | None, serial: int
    ) -> set[str]:
        """Create, refresh or drop a namespace's zone; return the services to rebuild."""
        zone = self._zone_of_namespace.get(namespace_id)
        if zone is not None and zone.apex == apex:
            self._refresh_zone(model, namespace_id, serial)
            return set()
        # A new, renamed or removed zone: its services must move with it.
        services = {s for s, n in self._service_namespace.items() if n == namespace_id}
        if zone is not None:
            del self._zone_of_namespace[namespace_id]
            if self._zones.get(zone.apex) is zone:
                del self._zones[zone.apex]
            self._install(_zone_source(namespace_id), {})
        if apex is not None:
            self._zone_of_namespace[namespace_id] = Zone(namespace_id, apex)
            self._refresh_zone(model, namespace_id, serial)
            services |= {s.id for s in model.services.values() if s.namespace_id == namespace_id}
        return services

    def _refresh_zone(self, model: RegistryModel, namespace_id: str, serial: int) -> None:
        """New serial and SOA for a zone whose content changed."""
        zone = self._zone_of_namespace.get(namespace_id)
        namespace = model.namespaces.get(namespace_id)
        if zone is None or namespace is None:
            return
        zone.refresh(serial, namespace.soa_ttl)
        self._install(_zone_source(namespace_id), {zone.apex: zone.apex_node()})
        self._zones[zone.apex] = zone

    def _rebuild_service(self, model: RegistryModel, service_id: str) -> set[str]:
        """Republish one service; return the namespaces whose content changed."""
        touched: set[str] = set()
        previous = self._service_namespace.pop(service_id, None)
        if previous is not None:
            touched.add(previous)
        service = model.services.get(service_id)
        zone = self._zone_of_namespace.get(service.namespace_id) if service else None
        nodes: dict[bytes, Node] = {}
        if service is not None and zone is not None:
            nodes = service_nodes(zone, service, model.instances_of(service_id).values())
            self._service_namespace[service_id] = service.namespace_id
            touched.add(service.namespace_id)
        self._install(_service_source(service_id), nodes)
        return touched

    def _install(self, source: str, nodes: Mapping[bytes, Node]) -> None:
        """Replace everything ``source`` publishes with ``nodes``, name by name."""
        previous = self._names_of_source.pop(source, set())
        for name in previous - nodes.keys():
            del self._published[name][source]
            self._publish(name)
        for name, node in nodes.items():
            self._published.setdefault(name, {})[source] = node
            self._publish(name)
        if nodes:
            self._names_of_source[source] = set(nodes)

    def _publish(self, name: bytes) -> None:
        """Make the best-ranked node published at ``name`` visible to queries."""
        candidates = self._published.get(name)
        if not candidates:
            self._published.pop(name, None)
            self._names.pop(name, None)
            return
        _, node = min(candidates.items(), key=lambda item: (item[1].rank, item[0]))
        self._names[name] = node

    # -- query path (DNS thread) ---------------------------------------------------------

    def answer(self, query: bytes, max_udp: int | None = MAX_UDP_PAYLOAD) -> bytes | None:
        """The reply to ``query``, or None to drop it (unreadable header, or a response).

        ``max_udp`` is the largest UDP reply the server sends (the client's EDNS size is
        capped to it); None means TCP, where no truncation applies.
        """
        if len(query) < HEADER_LEN or query[2] & 0x80:
            return None
        if query[2] & 0x78:
            return wire.error_reply(query, Rcode.NOTIMP)
        if query[4:6] != _QD_ONE:
            return wire.error_reply(query, Rcode.FORMERR)
        end = HEADER_LEN  # walk the question name's labels up to its root label
        length = query[end] if len(query) > end else -1
        while length > 0:
            if length > 63:  # compression pointers and extended labels do not belong here
                return wire.error_reply(query, Rcode.FORMERR)
            end += length + 1
            length = query[end] if len(query) > end else -1
        if length < 0 or len(query) < end + 5 or end - HEADER_LEN >= wire.MAX_NAME_LEN:
            return wire.error_reply(query, Rcode.FORMERR)
        question = query[HEADER_LEN : end + 5]
        if query[6:12] != _NO_RECORDS:
            return self._answer_with_records(query, question, end, max_udp)
        qtype = query[end + 1] << 8 | query[end + 2]
        if query[end + 3] or query[end + 4] != CLASS_IN or qtype in _REFUSED_TYPES:
            return wire.error_reply(query, Rcode.REFUSED, question)
        node = self._names.get(query[HEADER_LEN : end + 1].lower())
        if node is None:
            return self._answer_missing(query, question, end, b"")
        sections = node.rrsets.get(qtype, node.fallback).pick(self._rng)
        reply = b"".join(
            (query[:2], _AUTHORITATIVE_FLAGS[query[2] & 1], sections.head, question, sections.tail)
        )
        if max_udp is not None and len(reply) > wire.CLASSIC_UDP_PAYLOAD:
            return _shrink(query, question, sections, b"", wire.CLASSIC_UDP_PAYLOAD)
        return reply

    def _answer_with_records(
        self, query: bytes, question: bytes, end: int, max_udp: int | None
    ) -> bytes | None:
        """Queries with records after the question: usually an EDNS0 OPT record."""
        try:
            edns = wire.parse_edns(query, end + 5)
        except wire.FormatError:
            return wire.error_reply(query, Rcode.FORMERR)
        if edns is None:
            opt, limit = b"", wire.CLASSIC_UDP_PAYLOAD
        else:
            payload, version, dnssec_ok = edns
            if version > 0:
                return wire.error_reply(query, Rcode.BADVERS, question, _OPT_BADVERS)
            opt, limit = _OPT[dnssec_ok], max(wire.CLASSIC_UDP_PAYLOAD, payload)
        qtype = query[end + 1] << 8 | query[end + 2]
        if query[end + 3] or query[end + 4] != CLASS_IN or qtype in _REFUSED_TYPES:
            return wire.error_reply(query, Rcode.REFUSED, question, opt)
        node = self._names.get(query[HEADER_LEN : end + 1].lower())
        if node is None:
            return self._answer_missing(query, question, end, opt)
        sections = node.rrsets.get(qtype, node.fallback).pick(self._rng)
        head = sections.head_opt if opt else sections.head
        flags = _AUTHORITATIVE_FLAGS[query[2] & 1]
        reply = b"".join((query[:2], flags, head, question, sections.tail, opt))
        if max_udp is not None and len(reply) > min(limit, max_udp):
            return _shrink(query, question, sections, opt, min(limit, max_udp))
        return reply

    def _answer_missing(self, query: bytes, question: bytes, end: int, opt: bytes) -> bytes:
        """NXDOMAIN under the most specific zone we serve; REFUSED outside all of them."""
        name = query[HEADER_LEN : end + 1].lower()
        offset = 0
        while True:
            zone = self._zones.get(name[offset:])
            if zone is not None:
                return _with_sections(query, Rcode.NXDOMAIN, question, zone.negative, opt)
            if not name[offset]:
                return wire.error_reply(query, Rcode.REFUSED, question, opt)
            offset += 1 + name[offset]


def _zone_source(namespace_id: str) -> str:
    return f"ns:{namespace_id}"


def _service_source(service_id: str) -> str:
    return f"svc:{service_id}"


def _with_sections(
    query: bytes, rcode: int, question: bytes, sections: Sections, opt: bytes
) -> bytes:
    return wire.reply(
        query,
        rcode=rcode,
        authoritative=True,
        question=question,
        counts=(sections.ancount, sections.nscount, sections.arcount),
        sections=sections.tail,
        opt=opt,
    )


def _shrink(query: bytes, question: bytes, sections: Sections, opt: bytes, limit: int) -> bytes:
    """Fit a UDP reply into ``limit``: drop the glue if that is enough, else set TC.

    Glue (the additional section) is optional data, so leaving it out does not set TC
    (RFC 2181 9). When the answer itself does not fit, the reply carries only the
    question (and OPT) with TC=1 and the client retries over TCP.
    """
    if sections.arcount:
        bare = wire.reply(
            query,
            rcode=Rcode.NOERROR,
            authoritative=True,
            question=question,
            counts=(sections.ancount, sections.nscount, 0),
            sections=sections.body,
            opt=opt,
        )
        if len(bare) <= limit:
            return bare
    return wire.reply(
        query, rcode=Rcode.NOERROR, authoritative=True, question=question, opt=opt, truncated=True
    )
