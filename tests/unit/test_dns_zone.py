"""DnsTable semantics: what each name answers, decoded with dnspython.

The table is built from a small in-memory registry (``StaticRegistry``, which satisfies
``mapmesh.dns.RegistryModel`` like the real view does) and queried through
``DnsTable.answer`` without sockets. The helpers at the top are shared with the server
and fuzz tests.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from mapmesh.dns import DnsTable
from mapmesh.model.registry import (
    ATTR_CNAME,
    ATTR_IPV4,
    ATTR_IPV6,
    ATTR_PORT,
    DnsConfig,
    DnsProperties,
    DnsRecord,
    HealthStatus,
    Instance,
    Namespace,
    NamespaceProperties,
    NamespaceType,
    RecordType,
    RoutingPolicy,
    Service,
    ServiceType,
    Soa,
)
from mapmesh.registry.view import ViewChange

ACCOUNT = "111122223333"
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)

# -- a registry in memory ------------------------------------------------------------------


@dataclass
class StaticRegistry:
    """Namespaces, services and instances in dicts, plus a revision counter for changes."""

    namespaces: dict[str, Namespace] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    instances: dict[str, dict[str, Instance]] = field(default_factory=dict)
    revision: int = 0

    def instances_of(self, service_id: str) -> dict[str, Instance]:
        return self.instances.get(service_id, {})

    def change(
        self, namespaces: Iterable[str] = (), services: Iterable[str] = (), reset: bool = False
    ) -> ViewChange:
        self.revision += 1
        return ViewChange(self.revision, set(namespaces), set(services), reset)

    def add_namespace(
        self,
        name: str,
        *,
        kind: NamespaceType = NamespaceType.DNS_PRIVATE,
        soa_ttl: int = 15,
        namespace_id: str | None = None,
        age: int = 0,
    ) -> Namespace:
        namespace_id = namespace_id or f"ns-{len(self.namespaces) + 1:04d}"
        dns_properties = DnsProperties(soa=Soa(ttl=soa_ttl))
        properties = NamespaceProperties(
            dns_properties=None if kind is NamespaceType.HTTP else dns_properties
        )
        namespace = Namespace(
            id=namespace_id,
            arn=f"arn:aws:servicediscovery:us-east-1:{ACCOUNT}:namespace/{namespace_id}",
            name=name,
            type=kind,
            properties=properties,
            create_date=EPOCH - timedelta(days=age),
            resource_owner=ACCOUNT,
        )
        self.namespaces[namespace_id] = namespace
        return namespace

    def add_service(
        self,
        namespace: Namespace,
        name: str,
        records: dict[RecordType, int] | None = None,
        *,
        routing: RoutingPolicy = RoutingPolicy.MULTIVALUE,
        service_id: str | None = None,
        dns: bool = True,
    ) -> Service:
        service_id = service_id or f"srv-{len(self.services) + 1:04d}"
        records = {RecordType.A: 60} if records is None else records
        config = DnsConfig(
            routing_policy=routing,
            dns_records=tuple(DnsRecord(type=t, ttl=ttl) for t, ttl in records.items()),
        )
        service = Service(
            id=service_id,
            arn=f"arn:aws:servicediscovery:us-east-1:{ACCOUNT}:service/{service_id}",
            name=name,
            namespace_id=namespace.id,
            type=ServiceType.DNS_HTTP,
            dns_config=config if dns else None,
            create_date=EPOCH,
            created_by_account=ACCOUNT,
            resource_owner=ACCOUNT,
        )
        self.services[service_id] = service
        return service

    def register(
        self,
        service: Service,
        instance_id: str,
        *,
        ipv4: str | None = None,
        ipv6: str | None = None,
        port: int | None = None,
        cname: str | None = None,
        health: HealthStatus = HealthStatus.UNKNOWN,
    ) -> Instance:
        attributes = {
            key: str(value)
            for key, value in (
                (ATTR_IPV4, ipv4),
                (ATTR_IPV6, ipv6),
                (ATTR_PORT, port),
                (ATTR_CNAME, cname),
            )
            if value is not None
        }
        instance = Instance(
            id=instance_id,
            service_id=service.id,
            attributes=attributes,
            created_by_account=ACCOUNT,
            health_status=health,
            registered_at=EPOCH,
        )
        self.instances.setdefault(service.id, {})[instance_id] = instance
        return instance


def built(registry: StaticRegistry, seed: int = 7) -> DnsTable:
    table = DnsTable(rng=random.Random(seed))
    table.rebuild(registry, registry.change(reset=True))
    return table


def ask(
    table: DnsTable,
    name: str,
    rdtype: str = "A",
    *,
    use_edns: int | bool = False,
    payload: int = 1232,
    max_udp: int | None = 4096,
) -> dns.message.Message:
    """Query ``table`` for ``name``/``rdtype`` and decode the reply with dnspython."""
    query = dns.message.make_query(name, rdtype, use_edns=use_edns, payload=payload)
    reply = table.answer(query.to_wire(), max_udp)
    assert reply is not None
    message = dns.message.from_wire(reply)
    assert message.id == query.id
    return message


def answer_texts(message: dns.message.Message, rdtype: str = "A") -> list[str]:
    return [
        rdata.to_text()
        for rrset in message.answer
        if rrset.rdtype == dns.rdatatype.from_text(rdtype)
        for rdata in rrset
    ]


def soa_of(message: dns.message.Message) -> dns.rrset.RRset:
    (soa,) = message.authority
    assert soa.rdtype == dns.rdatatype.SOA
    return soa


def web_registry(count: int = 3, **service_options: object) -> tuple[StaticRegistry, Service]:
    registry = StaticRegistry()
    corp = registry.add_namespace("corp.local")
    web = registry.add_service(corp, "web", **service_options)  # type: ignore[arg-type]
    for index in range(count):
        registry.register(web, f"i-{index}", ipv4=f"10.0.0.{index + 1}", port=8080)
    return registry, web


# -- address records -----------------------------------------------------------------------


def test_a_query_answers_every_instance_with_the_record_ttl_and_aa() -> None:
    registry, _ = web_registry(3)
    message = ask(built(registry), "web.corp.local")
    assert message.rcode() == dns.rcode.NOERROR
    assert message.flags & dns.flags.AA
    assert sorted(answer_texts(message)) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert message.answer[0].ttl == 60
    assert not message.authority and not message.additional


def test_names_match_case_insensitively_and_the_reply_keeps_the_clients_case() -> None:
    registry, _ = web_registry(1)
    message = ask(built(registry), "WeB.CoRp.LOCAL.")
    assert message.answer[0].name.to_text() == "WeB.CoRp.LOCAL."
    assert message.question[0].name.to_text() == "WeB.CoRp.LOCAL."


def test_aaaa_comes_from_the_ipv6_attribute() -> None:
    registry = StaticRegistry()
    corp = registry.add_namespace("corp")
    api = registry.add_service(corp, "api", {RecordType.A: 10, RecordType.AAAA: 20})
    registry.register(api, "dual", ipv4="10.1.1.1", ipv6="2001:db8::1")
    registry.register(api, "v4only", ipv4="10.1.1.2")
    table = built(registry)
    aaaa = ask(table, "api.corp", "AAAA")
    assert answer_texts(aaaa, "AAAA") == ["2001:db8::1"]
    assert aaaa.answer[0].ttl == 20
    assert sorted(answer_texts(ask(table, "api.corp", "A"))) == ["10.1.1.1", "10.1.1.2"]


def test_instances_with_unusable_addresses_are_left_out() -> None:
    registry = StaticRegistry()
    corp = registry.add_namespace("corp")
    api = registry.add_service(corp, "api")
    registry.register(api, "good", ipv4="10.1.1.1")
    registry.register(api, "bad", ipv4="not-an-ip")
    registry.register(api, "none", ipv6="2001:db8::2")
    assert answer_texts(ask(built(registry), "api.corp")) == ["10.1.1.1"]


# -- SRV -----------------------------------------------------------------------------------


def srv_registry() -> tuple[StaticRegistry, Service]:
    registry = StaticRegistry()
    corp = registry.add_namespace("corp")
    db = registry.add_service(corp, "db", {RecordType.SRV: 30, RecordType.A: 45})
    registry.register(db, "db-1", ipv4="10.2.0.1", ipv6="2001:db8::1", port=5432)
    registry.register(db, "db-2", ipv4="10.2.0.2", port=5433)
    registry.register(db, "bad_id.x", ipv4="10.2.0.3", port=5434)  # not a DNS label
    registry.register(db, "noport", ipv4="10.2.0.4")
    return registry, db


def test_srv_points_at_per_instance_names_and_carries_their_addresses_as_glue() -> None:
    registry, _ = srv_registry()
    message = ask(built(registry), "db.corp", "SRV")
    assert sorted(answer_texts(message, "SRV")) == [
        "1 1 5432 db-1.db.corp.",
        "1 1 5433 db-2.db.corp.",
    ]
    assert message.answer[0].ttl == 30
    glue = {(r.name.to_text(), r.rdtype, r.ttl, r[0].to_text()) for r in message.additional}
    assert glue == {
        ("db-1.db.corp.", dns.rdatatype.A, 45, "10.2.0.1"),
        ("db-1.db.corp.", dns.rdatatype.AAAA, 30, "2001:db8::1"),
        ("db-2.db.corp.", dns.rdatatype.A, 45, "10.2.0.2"),
    }


def test_srv_targets_resolve_on_their_own() -> None:
    registry, _ = srv_registry()
    table = built(registry)
    assert answer_texts(ask(table, "DB-1.db.corp", "A")) == ["10.2.0.1"]
    assert answer_texts(ask(table, "db-1.db.corp", "AAAA"), "AAAA") == ["2001:db8::1"]
    nodata = ask(table, "db-2.db.corp", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert ask(table, "noport.db.corp").rcode() == dns.rcode.NXDOMAIN


def test_instances_without_a_usable_port_get_no_srv_record() -> None:
    registry, db = srv_registry()
    registry.register(db, "bigport", ipv4="10.2.0.5", port=70000)
    odd = registry.register(db, "oddport", ipv4="10.2.0.6")
    attributes = {**odd.attributes, ATTR_PORT: "\u00b2"}  # a digit int() cannot parse
    registry.instances[db.id]["oddport"] = odd.model_copy(update={"attributes": attributes})
    message = ask(built(registry), "db.corp", "SRV")
    assert len(answer_texts(message, "SRV")) == 2


def test_the_service_name_also_answers_a_with_every_instance() -> None:
    registry, _ = srv_registry()
    assert len(answer_texts(ask(built(registry), "db.corp", "A"))) == 4


# -- CNAME ---------------------------------------------------------------------------------


def test_weighted_cname_answers_every_type_with_one_target() -> None:
    registry = StaticRegistry()
    corp = registry.add_namespace("corp")
    ext = registry.add_service(corp, "ext", {RecordType.CNAME: 300}, routing=RoutingPolicy.WEIGHTED)
    registry.register(ext, "a", cname="a.example.com")
    registry.register(ext, "b", cname="b.example.com")
    table = built(registry)
    for rdtype in ("CNAME", "A", "AAAA", "ANY"):
        message = ask(table, "ext.corp", rdtype)
        assert len(answer_texts(message, "CNAME")) == 1
        assert message.answer[0].ttl == 300
    seen = {answer_texts(ask(table, "ext.corp", "CNAME"), "CNAME")[0] for _ in range(40)}
    assert seen == {"a.example.com.", "b.example.com."}


def test_cname_without_weighted_routing_publishes_nothing_but_the_name() -> None:
    registry = StaticRegistry()
    corp = registry.add_namespace("corp")
    ext = registry.add_service(corp, "ext", {RecordType.CNAME: 300})
    registry.register(ext, "a", cname="a.example.com")
    message = ask(built(registry), "ext.corp", "CNAME")
    assert message.rcode() == dns.rcode.NOERROR and not message.answer


# -- routing policies ----------------------------------------------------------------------


def test_multivalue_with_more_than_eight_answers_eight_distinct_random_records() -> None:
    registry, _ = web_registry(20)
    table = built(registry)
    everyone = {f"10.0.0.{i + 1}" for i in range(20)}
    subsets = set()
    for _ in range(30):
        chosen = answer_texts(ask(table, "web.corp.local"))
        assert len(chosen) == 8 and len(set(chosen)) == 8
        assert set(chosen) <= everyone
        subsets.add(frozenset(chosen))
    assert len(subsets) > 20


def test_multivalue_samples_are_reproducible_from_the_seed() -> None:
    registry, _ = web_registry(20)
    first, second = built(registry, seed=3), built(registry, seed=3)
    for _ in range(5):
        assert answer_texts(ask(first, "web.corp.local")) == answer_texts(
            ask(second, "web.corp.local")
        )


def test_multivalue_srv_sample_keeps_glue_for_exactly_the_chosen_targets() -> None:
    registry = StaticRegistry()
    corp = registry.add_namespace("corp")
    db = registry.add_service(corp, "db", {RecordType.SRV: 30})
    for index in range(12):
        registry.register(db, f"db-{index}", ipv4=f"10.3.0.{index}", port=5000 + index)
    table = built(registry)
    for _ in range(10):
        message = ask(table, "db.corp", "SRV")
        targets = {rdata.target.to_text() for rdata in message.answer[0]}
        assert len(targets) == 8
        assert {rrset.name.to_text() for rrset in message.additional} == targets


def test_weighted_answers_one_record_and_spreads_over_all() -> None:
    registry, _ = web_registry(4, routing=RoutingPolicy.WEIGHTED)
    table = built(registry)
    seen: Counter[str] = Counter()
    for _ in range(200):
        (address,) = answer_texts(ask(table, "web.corp.local"))
        seen[address] += 1
    assert set(seen) == {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}


# -- health --------------------------------------------------------------------------------


def test_unhealthy_instances_are_left_out_and_unknown_counts_as_healthy() -> None:
    registry = StaticRegistry()
    corp = registry.add_namespace("corp")
    web = registry.add_service(corp, "web")
    registry.register(web, "up", ipv4="10.0.0.1", health=HealthStatus.HEALTHY)
    registry.register(web, "unknown", ipv4="10.0.0.2", health=HealthStatus.UNKNOWN)
    registry.register(web, "down", ipv4="10.0.0.3", health=HealthStatus.UNHEALTHY)
    assert sorted(answer_texts(ask(built(registry), "web.corp"))) == ["10.0.0.1", "10.0.0.2"]


def test_when_every_instance_is_unhealthy_up_to_eight_of_them_are_answered() -> None:
    registry = StaticRegistry()
    corp = registry.add_namespace("corp")
    web = registry.add_service(corp, "web")
    for index in range(10):
        registry.register(web, f"i{index}", ipv4=f"10.0.0.{index}", health=HealthStatus.UNHEALTHY)
    chosen = answer_texts(ask(built(registry), "web.corp"))
    assert len(chosen) == 8 and len(set(chosen)) == 8


def test_weighted_falls_back_to_one_unhealthy_record() -> None:
    registry = StaticRegistry()
    corp = registry.add_namespace("corp")
    web = registry.add_service(corp, "web", routing=RoutingPolicy.WEIGHTED)
    registry.register(web, "a", ipv4="10.0.0.1", health=HealthStatus.UNHEALTHY)
    registry.register(web, "b", ipv4="10.0.0.2", health=HealthStatus.UNHEALTHY)
    assert len(answer_texts(ask(built(registry), "web.corp"))) == 1


# -- negative answers and zone structure ---------------------------------------------------


def test_apex_answers_soa_and_ns() -> None:
    registry = StaticRegistry()
    registry.add_namespace("Corp.Local.", soa_ttl=33)
    table = built(registry)
    soa = ask(table, "corp.local", "SOA")
    (record,) = soa.answer
    assert record.ttl == 33
    assert record[0].mname.to_text() == "ns1.corp.local."
    assert record[0].rname.to_text() == "hostmaster.corp.local."
    assert (record[0].serial, record[0].refresh, record[0].retry) == (1, 7200, 900)
    assert (record[0].expire, record[0].minimum) == (1209600, 33)
    ns = ask(table, "CORP.local", "NS")
    assert answer_texts(ns, "NS") == ["ns1.CORP.local."]


def test_nxdomain_nodata_and_refused() -> None:
    registry, _ = web_registry(1)
    table = built(registry)

    nodata = ask(table, "web.corp.local", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and nodata.flags & dns.flags.AA
    assert not nodata.answer
    assert soa_of(nodata).name.to_text() == "corp.local."
    assert soa_of(nodata).ttl == 15

    missing = ask(table, "nope.corp.local")
    assert missing.rcode() == dns.rcode.NXDOMAIN and missing.flags & dns.flags.AA
    assert soa_of(missing)[0].minimum == 15

    below = ask(table, "x.web.corp.local")
    assert below.rcode() == dns.rcode.NXDOMAIN

    elsewhere = ask(table, "example.com")
    assert elsewhere.rcode() == dns.rcode.REFUSED
    assert not elsewhere.flags & dns.flags.AA and not elsewhere.authority


def test_a_service_without_instances_still_exists() -> None:
    registry = StaticRegistry()
    corp = registry.add_namespace("corp")
    registry.add_service(corp, "idle")
    message = ask(built(registry), "idle.corp")
    assert message.rcode() == dns.rcode.NOERROR and not message.answer
    assert soa_of(message)


def test_names_between_a_service_and_the_apex_are_empty_non_terminals() -> None:
    registry = StaticRegistry()
    corp = registry.add_namespace("corp")
    http = registry.add_service(corp, "_http._tcp.api", {RecordType.SRV: 10})
    registry.register(http, "a1", ipv4="10.0.0.1", port=80)
    table = built(registry)
    assert answer_texts(ask(table, "_http._tcp.api.corp", "SRV"), "SRV") == [
        "1 1 80 a1._http._tcp.api.corp."
    ]
    for empty in ("_tcp.api.corp", "api.corp"):
        message = ask(table, empty)
        assert message.rcode() == dns.rcode.NOERROR and not message.answer
    assert ask(table, "other.api.corp").rcode() == dns.rcode.NXDOMAIN


def test_http_namespaces_and_services_without_dns_config_publish_nothing() -> None:
    registry = StaticRegistry()
    registry.add_namespace("apps", kind=NamespaceType.HTTP)
    corp = registry.add_namespace("corp")
    plain = registry.add_service(corp, "plain", dns=False)
    registry.register(plain, "p", ipv4="10.0.0.1")
    table = built(registry)
    assert ask(table, "apps").rcode() == dns.rcode.REFUSED
    assert ask(table, "plain.corp").rcode() == dns.rcode.NXDOMAIN


def test_nested_zones_answer_nxdomain_from_the_most_specific_one() -> None:
    registry = StaticRegistry()
    registry.add_namespace("corp")
    registry.add_namespace("east.corp", soa_ttl=99)
    table = built(registry)
    assert soa_of(ask(table, "x.east.corp")).name.to_text() == "east.corp."
    assert soa_of(ask(table, "x.west.corp")).name.to_text() == "corp."


def test_two_namespaces_with_one_name_serve_the_older_one() -> None:
    registry = StaticRegistry()
    young = registry.add_namespace("corp", age=1)
    old = registry.add_namespace("corp", age=5)
    registry.register(registry.add_service(young, "web"), "y", ipv4="10.0.0.1")
    registry.register(registry.add_service(old, "web"), "o", ipv4="10.0.0.2")
    table = built(registry)
    assert answer_texts(ask(table, "web.corp")) == ["10.0.0.2"]

    del registry.namespaces[old.id]
    table.rebuild(registry, registry.change(namespaces=[old.id]))
    assert answer_texts(ask(table, "web.corp")) == ["10.0.0.1"]


def test_any_gets_one_rrset() -> None:
    registry, _ = srv_registry()
    message = ask(built(registry), "db.corp", "ANY")
    assert [rrset.rdtype for rrset in message.answer] == [dns.rdatatype.A]


# -- incremental rebuilds ------------------------------------------------------------------


def test_rebuild_touches_only_the_services_in_the_change() -> None:
    registry = StaticRegistry()
    corp = registry.add_namespace("corp")
    web = registry.add_service(corp, "web")
    api = registry.add_service(corp, "api")
    registry.register(web, "w1", ipv4="10.0.0.1")
    registry.register(api, "a1", ipv4="10.0.1.1")
    table = built(registry)

    registry.register(web, "w2", ipv4="10.0.0.2")
    registry.register(api, "a2", ipv4="10.0.1.2")
    table.rebuild(registry, registry.change(services=[web.id]))

    assert sorted(answer_texts(ask(table, "web.corp"))) == ["10.0.0.1", "10.0.0.2"]
    assert answer_texts(ask(table, "api.corp")) == ["10.0.1.1"]  # not in the change yet
    table.rebuild(registry, registry.change(services=[api.id]))
    assert sorted(answer_texts(ask(table, "api.corp"))) == ["10.0.1.1", "10.0.1.2"]


def test_each_change_to_a_zone_bumps_its_serial_to_the_revision() -> None:
    registry, web = web_registry(1)
    table = built(registry)
    assert ask(table, "corp.local", "SOA").answer[0][0].serial == 1
    registry.register(web, "late", ipv4="10.9.9.9")
    change = registry.change(services=[web.id])
    table.rebuild(registry, change)
    assert ask(table, "corp.local", "SOA").answer[0][0].serial == change.revision
    assert soa_of(ask(table, "nope.corp.local"))[0].serial == change.revision


def test_deleting_a_service_and_then_its_namespace() -> None:
    registry, web = web_registry(2)
    table = built(registry)
    del registry.services[web.id]
    del registry.instances[web.id]
    table.rebuild(registry, registry.change(namespaces=[web.namespace_id], services=[web.id]))
    assert ask(table, "web.corp.local").rcode() == dns.rcode.NXDOMAIN
    assert ask(table, "i-0.web.corp.local").rcode() == dns.rcode.NXDOMAIN

    del registry.namespaces[web.namespace_id]
    table.rebuild(registry, registry.change(namespaces=[web.namespace_id]))
    assert ask(table, "corp.local", "SOA").rcode() == dns.rcode.REFUSED
    assert table.statistics().names == 0


def test_a_namespace_arriving_after_its_services_publishes_them() -> None:
    registry = StaticRegistry()
    corp = registry.add_namespace("corp")
    web = registry.add_service(corp, "web")
    registry.register(web, "w1", ipv4="10.0.0.1")
    del registry.namespaces[corp.id]
    table = built(registry)
    assert ask(table, "web.corp").rcode() == dns.rcode.REFUSED

    registry.namespaces[corp.id] = corp
    table.rebuild(registry, registry.change(namespaces=[corp.id]))
    assert answer_texts(ask(table, "web.corp")) == ["10.0.0.1"]


def test_soa_ttl_update_changes_negative_answers_without_rebuilding_services() -> None:
    registry, _ = web_registry(1)
    table = built(registry)
    namespace = next(iter(registry.namespaces.values()))
    registry.add_namespace(namespace.name, soa_ttl=120, namespace_id=namespace.id)
    table.rebuild(registry, registry.change(namespaces=[namespace.id]))
    assert soa_of(ask(table, "web.corp.local", "AAAA")).ttl == 120
    assert soa_of(ask(table, "gone.corp.local")).ttl == 120


def test_a_name_published_by_two_services_goes_to_the_service_name() -> None:
    registry = StaticRegistry()
    corp = registry.add_namespace("corp")
    db = registry.add_service(corp, "db", {RecordType.SRV: 30})
    registry.register(db, "primary", ipv4="10.0.0.1", port=5432)
    other = registry.add_service(corp, "primary.db")  # same name as db's SRV target
    registry.register(other, "x", ipv4="10.9.0.1")
    table = built(registry)
    assert answer_texts(ask(table, "primary.db.corp")) == ["10.9.0.1"]

    del registry.services[other.id]
    table.rebuild(registry, registry.change(services=[other.id]))
    assert answer_texts(ask(table, "primary.db.corp")) == ["10.0.0.1"]
