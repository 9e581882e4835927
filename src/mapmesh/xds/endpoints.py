"""A virtual node's service discovery → the endpoints of its cluster.

Cloud Map discovery does what App Mesh's Envoy did with ``DiscoverInstances``: find the
namespace by its HTTP name and the service by name, keep the instances whose attributes match
every configured key/value, take the address the IP preference asks for (``AWS_INSTANCE_IPV4``
/ ``AWS_INSTANCE_IPV6``) and the port from ``AWS_INSTANCE_PORT`` (else the cluster's listener
port). Health comes from the registry as is: HEALTHY and UNKNOWN instances take traffic,
UNHEALTHY ones are listed but marked, so ``explain`` can show why they get none.

An instance's ``MAPMESH_WEIGHT`` attribute (an integer 1-128, like Envoy's
``load_balancing_weight``; App Mesh had no per-endpoint weight) becomes its endpoint's load
balancing weight. Any other value is ignored with an ``INVALID_WEIGHT`` warning, never a failed
compile: one bad registration must not take a cluster's other endpoints down with it.

DNS discovery gives one endpoint, the hostname on the listener port, which the proxy resolves.
"""

from __future__ import annotations

from dataclasses import dataclass

from mapmesh.model import appmesh as am
from mapmesh.model.registry import Instance
from mapmesh.model.snapshot import Discovery, Endpoint, IpPreference
from mapmesh.xds import defaults
from mapmesh.xds.diagnostics import CompileWarning, WarningCode
from mapmesh.xds.sources import RegistrySource

__all__ = [
    "MAX_WEIGHT",
    "WEIGHT_ATTRIBUTE",
    "Discovered",
    "InvalidWeight",
    "discover",
    "endpoint_weight",
    "ip_preference",
]

WEIGHT_ATTRIBUTE = "MAPMESH_WEIGHT"
MAX_WEIGHT = 128  # Envoy's upper bound for an endpoint's load_balancing_weight


@dataclass(frozen=True, slots=True)
class Discovered:
    discovery: Discovery
    endpoints: tuple[Endpoint, ...]
    warnings: tuple[CompileWarning, ...]


def ip_preference(
    node: am.ServiceDiscovery | None, mesh: am.MeshServiceDiscovery | None
) -> tuple[IpPreference, bool]:
    """The node's IP preference, else the mesh's, else the default (and whether defaulted)."""
    member = (node.aws_cloud_map or node.dns) if node is not None else None
    if member is not None and member.ip_preference is not None:
        return member.ip_preference, False
    if mesh is not None and mesh.ip_preference is not None:
        return mesh.ip_preference, False
    return defaults.IP_PREFERENCE, True


@dataclass(frozen=True, slots=True)
class InvalidWeight:
    """Why an instance's weight attribute was ignored (its endpoint gets weight 1)."""

    reason: str


def endpoint_weight(raw: str | None) -> int | InvalidWeight | None:
    """The weight a ``MAPMESH_WEIGHT`` value asks for; None when the attribute is unset."""
    if raw is None:
        return None
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_WEIGHT:
        return InvalidWeight(
            f"{WEIGHT_ATTRIBUTE}={raw!r} is not an integer from 1 to {MAX_WEIGHT}; weight 1 used"
        )
    return int(text)


def _address(instance: Instance, preference: IpPreference) -> str | None:
    v4, v6 = instance.ipv4, instance.ipv6
    if preference == "IPv4_ONLY":
        return v4
    if preference == "IPv6_ONLY":
        return v6
    if preference == "IPv6_PREFERRED":
        return v6 or v4
    return v4 or v6


def discover(
    registry: RegistrySource,
    configured: am.ServiceDiscovery | None,
    port: int | None,
    mesh_discovery: am.MeshServiceDiscovery | None,
    subject: str,
) -> Discovered:
    """The discovery settings and sorted endpoints of one cluster (``port`` is its port)."""
    preference, pref_defaulted = ip_preference(configured, mesh_discovery)
    pref_flag = ("ip_preference",) if pref_defaulted else ()
    if configured is not None and configured.aws_cloud_map is not None:
        return _cloud_map(registry, configured.aws_cloud_map, port, preference, pref_flag, subject)
    if configured is not None and configured.dns is not None:
        return _dns(configured.dns, port, preference, pref_flag, subject)
    warning = CompileWarning(
        subject,
        WarningCode.NO_SERVICE_DISCOVERY,
        "has no service discovery, so its cluster has no endpoints",
    )
    discovery = Discovery(kind="none", ip_preference=preference, defaulted=pref_flag)
    return Discovered(discovery, (), (warning,))


def _dns(
    configured: am.DnsServiceDiscovery,
    port: int | None,
    preference: IpPreference,
    defaulted: tuple[str, ...],
    subject: str,
) -> Discovered:
    response_type = configured.response_type
    if response_type is None:
        response_type = defaults.DNS_RESPONSE_TYPE
        defaulted = (*defaulted, "response_type")
    discovery = Discovery(
        kind="dns",
        hostname=configured.hostname,
        response_type=response_type,
        ip_preference=preference,
        defaulted=tuple(sorted(defaulted)),
    )
    if port is None:
        warning = CompileWarning(
            subject, WarningCode.NO_ENDPOINTS, "DNS discovery needs a listener port; none found"
        )
        return Discovered(discovery, (), (warning,))
    endpoint = Endpoint(address=configured.hostname, port=port, health="UNKNOWN")
    return Discovered(discovery, (endpoint,), ())


def _cloud_map(
    registry: RegistrySource,
    configured: am.AwsCloudMapServiceDiscovery,
    port: int | None,
    preference: IpPreference,
    defaulted: tuple[str, ...],
    subject: str,
) -> Discovered:
    wanted = tuple(sorted((a.key, a.value) for a in configured.attributes or ()))
    discovery = Discovery(
        kind="cloudMap",
        namespace=configured.namespace_name,
        service=configured.service_name,
        attributes=wanted,
        ip_preference=preference,
        defaulted=defaulted,
    )
    where = f"Cloud Map {configured.namespace_name}/{configured.service_name}"
    namespace = registry.namespace_by_http_name(configured.namespace_name)
    if namespace is None:
        warning = CompileWarning(
            subject, WarningCode.NAMESPACE_NOT_FOUND, f"{where}: namespace not found"
        )
        return Discovered(discovery, (), (warning,))
    service = registry.service_by_name(namespace.id, configured.service_name)
    if service is None:
        warning = CompileWarning(
            subject, WarningCode.SERVICE_NOT_FOUND, f"{where}: service not found"
        )
        return Discovered(discovery, (), (warning,))
    endpoints: list[Endpoint] = []
    warnings: list[CompileWarning] = []
    for instance in registry.instances_of(service.id).values():
        if any(instance.attributes.get(key) != value for key, value in wanted):
            continue
        address = _address(instance, preference)
        instance_port = instance.port if instance.port is not None else port
        if address is None or instance_port is None:
            missing = "an address for " + preference if address is None else "a port"
            warnings.append(
                CompileWarning(
                    subject,
                    WarningCode.INSTANCE_SKIPPED,
                    f"{where}: instance {instance.id!r} has no {missing}",
                )
            )
            continue
        weight = endpoint_weight(instance.attributes.get(WEIGHT_ATTRIBUTE))
        if isinstance(weight, InvalidWeight):
            warnings.append(
                CompileWarning(
                    subject,
                    WarningCode.INVALID_WEIGHT,
                    f"{where}: instance {instance.id!r}: {weight.reason}",
                )
            )
            weight = None
        endpoints.append(
            Endpoint(
                address=address,
                port=instance_port,
                health=instance.health_status.value,
                instance_id=instance.id,
                weight=weight,
            )
        )
    endpoints.sort(key=lambda e: (e.address, e.port, e.instance_id or ""))
    if not endpoints:
        attributes = ", ".join(f"{k}={v}" for k, v in wanted) or "any attributes"
        warnings.append(
            CompileWarning(
                subject, WarningCode.NO_ENDPOINTS, f"{where}: no instances match {attributes}"
            )
        )
    return Discovered(discovery, tuple(endpoints), tuple(warnings))
