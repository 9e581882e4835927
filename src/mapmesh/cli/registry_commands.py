"""``mapmesh namespace|service|instance ...`` and ``mapmesh discover``: the registry from a shell.

Every command reads the same way: turn flags into request parameters (pure functions that
raise :class:`UsageProblem`), connect, resolve the names the user gave, make the calls (waiting
for asynchronous operations), then render a table or the API's JSON. All expected failures go
through :func:`mapmesh.cli.problems.reporting`, which prints what went wrong and how to fix it.

Each command takes ``--endpoint`` (default ``$MAPMESH_ENDPOINT`` or http://127.0.0.1:7070) and
``--output table|json``, so they can be given anywhere on the command line.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from mapmesh.cli.client import CloudMapClient, wait_for_operation
from mapmesh.cli.problems import Subject, UsageProblem, reporting
from mapmesh.cli.render import (
    Output,
    discovered_table,
    emit_json,
    instances_table,
    namespaces_table,
    print_table,
    say,
    services_table,
)
from mapmesh.cli.resolve import (
    address_attributes,
    find_namespace,
    find_service,
    parse_pairs,
    parse_record_types,
    services_in,
)

__all__ = [
    "DEFAULT_ENDPOINT",
    "discover",
    "health_request",
    "instance_app",
    "namespace_app",
    "namespace_create_request",
    "service_app",
    "service_dns_request",
]

DEFAULT_ENDPOINT = "http://127.0.0.1:7070"
DEFAULT_RECORD_TTL = 10

# -- options shared by every command ------------------------------------------------------

EndpointOption = Annotated[
    str,
    typer.Option(
        "--endpoint",
        metavar="URL",
        envvar="MAPMESH_ENDPOINT",
        show_envvar=True,
        help="URL of the control plane's API.",
    ),
]
OutputOption = Annotated[
    Output,
    typer.Option(
        "--output",
        "-o",
        case_sensitive=False,
        help="table for people; json for scripts (the API's response shapes).",
    ),
]
NamespaceOption = Annotated[
    str, typer.Option("--namespace", metavar="NS", help="Namespace name or id.")
]
ServiceOption = Annotated[str, typer.Option("--service", metavar="S", help="Service name or id.")]


def connect(endpoint: str) -> CloudMapClient:
    try:
        return CloudMapClient(endpoint)
    except ValueError as exc:
        raise UsageProblem(f"--{exc}") from None


# -- namespaces ---------------------------------------------------------------------------

namespace_app = typer.Typer(
    name="namespace",
    help="Namespaces: the top of the registry (http, dns-private, dns-public).",
    no_args_is_help=True,
)


class NamespaceKind(StrEnum):
    http = "http"
    dns_private = "dns-private"
    dns_public = "dns-public"


def namespace_create_request(
    name: str, kind: NamespaceKind, description: str | None, ttl: int | None, vpc: str
) -> tuple[str, dict[str, Any]]:
    """The Create*Namespace operation and its parameters."""
    params: dict[str, Any] = {"Name": name}
    if description is not None:
        params["Description"] = description
    if kind is NamespaceKind.http:
        if ttl is not None:
            raise UsageProblem(
                "--ttl sets the SOA TTL of a DNS namespace; an http namespace has no DNS "
                "records. Drop --ttl or pass --type dns-private"
            )
        return "CreateHttpNamespace", params
    if ttl is not None:
        params["Properties"] = {"DnsProperties": {"SOA": {"TTL": ttl}}}
    if kind is NamespaceKind.dns_private:
        return "CreatePrivateDnsNamespace", {**params, "Vpc": vpc}
    return "CreatePublicDnsNamespace", params


@namespace_app.command("list")
def namespace_list(
    endpoint: EndpointOption = DEFAULT_ENDPOINT, output: OutputOption = Output.table
) -> None:
    """List all namespaces."""
    with reporting():
        namespaces = connect(endpoint).paginate("ListNamespaces", "Namespaces")
    if output is Output.json:
        emit_json({"Namespaces": namespaces})
    elif namespaces:
        print_table(namespaces_table(namespaces))
    else:
        say("No namespaces yet. Create one with `mapmesh namespace create NAME`.")


@namespace_app.command("create")
def namespace_create(
    name: Annotated[
        str, typer.Argument(help="Namespace name; a DNS domain such as corp.local for DNS types.")
    ],
    kind: Annotated[
        NamespaceKind,
        typer.Option("--type", case_sensitive=False, help="Kind of namespace."),
    ] = NamespaceKind.http,
    description: Annotated[str | None, typer.Option("--description", metavar="TEXT")] = None,
    ttl: Annotated[
        int | None,
        typer.Option(
            "--ttl",
            metavar="SECONDS",
            min=0,
            help="TTL of the SOA record in seconds (DNS types; 15).",
        ),
    ] = None,
    vpc: Annotated[
        str,
        typer.Option("--vpc", metavar="VPC_ID", help="VPC id recorded on a dns-private namespace."),
    ] = "vpc-mapmesh",
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    output: OutputOption = Output.table,
) -> None:
    """Create a namespace, wait until it exists and print its id."""
    with reporting(Subject(namespace=name)):
        operation, params = namespace_create_request(name, kind, description, ttl, vpc)
        client = connect(endpoint)
        done = wait_for_operation(client, client.call(operation, **params)["OperationId"])
        namespace_id = str(done["Targets"]["NAMESPACE"])
        if output is Output.json:
            emit_json(client.call("GetNamespace", Id=namespace_id))
        else:
            say(namespace_id)


@namespace_app.command("delete")
def namespace_delete(
    namespace: Annotated[str, typer.Argument(metavar="NAME_OR_ID", help="Namespace name or id.")],
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    output: OutputOption = Output.table,
) -> None:
    """Delete a namespace that has no services left."""
    with reporting(Subject(namespace=namespace)):
        client = connect(endpoint)
        found = find_namespace(client, namespace)
        done = wait_for_operation(
            client, client.call("DeleteNamespace", Id=found["Id"])["OperationId"]
        )
    if output is Output.json:
        emit_json({"Operation": done})
    else:
        say(f"deleted namespace {found['Name']} ({found['Id']})")


# -- services -----------------------------------------------------------------------------

service_app = typer.Typer(
    name="service",
    help="Services: named groups of instances in a namespace, with DNS and health settings.",
    no_args_is_help=True,
)


class Routing(StrEnum):
    multivalue = "multivalue"
    weighted = "weighted"


class CheckKind(StrEnum):
    http = "http"
    https = "https"
    tcp = "tcp"


def service_dns_request(
    dns: list[str] | None, ttl: int | None, routing: Routing | None, namespace: dict[str, Any]
) -> dict[str, Any]:
    """CreateService's DnsConfig (or ``Type: HTTP``) for ``--dns/--ttl/--routing``.

    In a DNS namespace the records default to A; ``--dns none`` makes the service
    discoverable through the API only. HTTP namespaces have no DNS records at all.
    """
    wants_none = dns is not None and [d.strip().lower() for d in dns] == ["none"]
    types = None if dns is None or wants_none else parse_record_types(dns)
    if namespace.get("Type") == "HTTP":
        if dns is not None or ttl is not None or routing is not None:
            raise UsageProblem(
                f"namespace '{namespace.get('Name')}' is an http namespace, which has no DNS "
                "records; drop --dns/--ttl/--routing or use a DNS namespace"
            )
        return {}
    if wants_none:
        if ttl is not None or routing is not None:
            raise UsageProblem("--ttl and --routing describe DNS records; drop them or drop --dns")
        return {"Type": "HTTP"}
    record_ttl = DEFAULT_RECORD_TTL if ttl is None else ttl
    records = [{"Type": kind, "TTL": record_ttl} for kind in types or ["A"]]
    policy = (routing or Routing.multivalue).value.upper()
    return {"DnsConfig": {"DnsRecords": records, "RoutingPolicy": policy}}


def health_request(
    kind: CheckKind | None, path: str | None, threshold: int | None, custom: bool
) -> dict[str, Any]:
    """CreateService's HealthCheckConfig or HealthCheckCustomConfig."""
    if custom:
        if kind is not None or path is not None or threshold is not None:
            raise UsageProblem(
                "choose --custom-health (you report health with `mapmesh instance health`) or "
                "--health-check (the control plane probes instances), not both"
            )
        return {"HealthCheckCustomConfig": {}}
    if kind is None:
        if path is not None or threshold is not None:
            raise UsageProblem(
                "--health-path and --failure-threshold configure an active check; "
                "add --health-check http|https|tcp"
            )
        return {}
    check: dict[str, Any] = {"Type": kind.value.upper()}
    if path is not None:
        if kind is CheckKind.tcp:
            raise UsageProblem("--health-path applies to http and https checks, not tcp")
        if not path.startswith("/"):
            raise UsageProblem(f"--health-path must start with '/', got {path!r}")
        check["ResourcePath"] = path
    if threshold is not None:
        check["FailureThreshold"] = threshold
    return {"HealthCheckConfig": check}


@service_app.command("list")
def service_list(
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", metavar="NS", help="Only this namespace (name or id)."),
    ] = None,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    output: OutputOption = Output.table,
) -> None:
    """List services, of all namespaces or one."""
    with reporting(Subject(namespace=namespace)):
        client = connect(endpoint)
        namespaces = (
            [find_namespace(client, namespace)]
            if namespace is not None
            else client.paginate("ListNamespaces", "Namespaces")
        )
        rows = [
            (svc, str(ns["Name"])) for ns in namespaces for svc in services_in(client, ns["Id"])
        ]
    if output is Output.json:
        emit_json({"Services": [svc for svc, _ in rows]})
    elif rows:
        print_table(services_table(rows))
    else:
        where = f" in namespace '{namespace}'" if namespace else ""
        say(f"No services{where}. Create one with `mapmesh service create NAME --namespace NS`.")


@service_app.command("create")
def service_create(
    name: Annotated[str, typer.Argument(help="Service name; a DNS label in DNS namespaces.")],
    namespace: NamespaceOption,
    dns: Annotated[
        list[str] | None,
        typer.Option(
            "--dns",
            metavar="TYPES",
            help="DNS record types: A, AAAA, SRV, CNAME (comma-separated or repeated), or none "
            "for API-only discovery. Default in DNS namespaces: A.",
        ),
    ] = None,
    ttl: Annotated[
        int | None,
        typer.Option(
            "--ttl",
            metavar="SECONDS",
            min=0,
            help=f"TTL of the DNS records in seconds ({DEFAULT_RECORD_TTL}).",
        ),
    ] = None,
    routing: Annotated[
        Routing | None,
        typer.Option("--routing", case_sensitive=False, help="DNS routing policy (multivalue)."),
    ] = None,
    health_check: Annotated[
        CheckKind | None,
        typer.Option(
            "--health-check",
            case_sensitive=False,
            help="Active check the control plane runs against each instance.",
        ),
    ] = None,
    health_path: Annotated[
        str | None,
        typer.Option("--health-path", metavar="PATH", help="Path of http/https checks (/)."),
    ] = None,
    failure_threshold: Annotated[
        int | None,
        typer.Option(
            "--failure-threshold",
            metavar="N",
            min=1,
            max=10,
            help="Consecutive failed checks before an instance is unhealthy.",
        ),
    ] = None,
    custom_health: Annotated[
        bool,
        typer.Option(
            "--custom-health", help="You report instances' health (`mapmesh instance health`)."
        ),
    ] = False,
    description: Annotated[str | None, typer.Option("--description", metavar="TEXT")] = None,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    output: OutputOption = Output.table,
) -> None:
    """Create a service in a namespace and print its id."""
    with reporting(Subject(namespace=namespace, service=name)):
        health = health_request(health_check, health_path, failure_threshold, custom_health)
        client = connect(endpoint)
        ns = find_namespace(client, namespace)
        params: dict[str, Any] = {
            "Name": name,
            "NamespaceId": ns["Id"],
            **service_dns_request(dns, ttl, routing, ns),
            **health,
        }
        if description is not None:
            params["Description"] = description
        created = client.call("CreateService", **params)
    if output is Output.json:
        emit_json(created)
    else:
        say(str(created["Service"]["Id"]))


@service_app.command("delete")
def service_delete(
    service: Annotated[str, typer.Argument(metavar="NAME_OR_ID", help="Service name or id.")],
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace", metavar="NS", help="Namespace of the service (needed for a name)."
        ),
    ] = None,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    output: OutputOption = Output.table,
) -> None:
    """Delete a service that has no instances left."""
    with reporting(Subject(namespace=namespace, service=service)):
        if namespace is None and not service.startswith(("srv-", "arn:")):
            raise UsageProblem(
                f"pass --namespace NS to delete service '{service}' by name, or give its id "
                "(srv-...; see `mapmesh service list`)"
            )
        client = connect(endpoint)
        if namespace is None:
            found = client.call("GetService", Id=service)["Service"]
        else:
            found = find_service(client, find_namespace(client, namespace), service)
        client.call("DeleteService", Id=found["Id"])
    if output is Output.json:
        emit_json({})
    else:
        say(f"deleted service {found['Name']} ({found['Id']})")


# -- instances ----------------------------------------------------------------------------

instance_app = typer.Typer(
    name="instance",
    help="Instances: the addresses behind a service, with attributes and health.",
    no_args_is_help=True,
)

InstanceArgument = Annotated[str, typer.Argument(metavar="ID", help="Instance id.")]


class CustomHealth(StrEnum):
    healthy = "healthy"
    unhealthy = "unhealthy"


def _service(client: CloudMapClient, namespace: str, service: str) -> dict[str, Any]:
    return find_service(client, find_namespace(client, namespace), service)


@instance_app.command("list")
def instance_list(
    namespace: NamespaceOption,
    service: ServiceOption,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    output: OutputOption = Output.table,
) -> None:
    """List a service's instances with their health."""
    with reporting(Subject(namespace=namespace, service=service)):
        client = connect(endpoint)
        service_id = _service(client, namespace, service)["Id"]
        instances = client.paginate("ListInstances", "Instances", ServiceId=service_id)
        status: dict[str, str] = {}
        for page in client.pages("GetInstancesHealthStatus", ServiceId=service_id):
            status.update(page.get("Status") or {})
    if output is Output.json:
        emit_json({"Instances": instances, "Status": status})
    elif instances:
        print_table(instances_table(instances, status))
    else:
        say(
            f"No instances in service '{service}'. Register one with `mapmesh instance register "
            f"--namespace {namespace} --service {service} ID --ip ADDRESS`."
        )


@instance_app.command("register")
def instance_register(
    instance: InstanceArgument,
    namespace: NamespaceOption,
    service: ServiceOption,
    ip: Annotated[
        str | None,
        typer.Option("--ip", metavar="ADDRESS", help="IPv4 or IPv6 address of the instance."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", metavar="PORT", min=1, max=65535, help="Port of the instance."),
    ] = None,
    attr: Annotated[
        list[str] | None,
        typer.Option(
            "--attr", metavar="KEY=VALUE", help="Custom attribute KEY=VALUE; repeat for more."
        ),
    ] = None,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    output: OutputOption = Output.table,
) -> None:
    """Register (or update) an instance and wait until it is stored."""
    with reporting(Subject(namespace=namespace, service=service, instance=instance)):
        attributes = address_attributes(ip, port, parse_pairs("--attr", attr))
        client = connect(endpoint)
        service_id = _service(client, namespace, service)["Id"]
        started = client.call(
            "RegisterInstance", ServiceId=service_id, InstanceId=instance, Attributes=attributes
        )
        done = wait_for_operation(client, started["OperationId"])
    if output is Output.json:
        emit_json({"Operation": done})
    else:
        say(f"registered instance {instance} in service {service} of namespace {namespace}")


@instance_app.command("deregister")
def instance_deregister(
    instance: InstanceArgument,
    namespace: NamespaceOption,
    service: ServiceOption,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    output: OutputOption = Output.table,
) -> None:
    """Deregister an instance and wait until it is gone."""
    with reporting(Subject(namespace=namespace, service=service, instance=instance)):
        client = connect(endpoint)
        service_id = _service(client, namespace, service)["Id"]
        started = client.call("DeregisterInstance", ServiceId=service_id, InstanceId=instance)
        done = wait_for_operation(client, started["OperationId"])
    if output is Output.json:
        emit_json({"Operation": done})
    else:
        say(f"deregistered instance {instance} from service {service} of namespace {namespace}")


@instance_app.command("health")
def instance_health(
    instance: InstanceArgument,
    status: Annotated[
        CustomHealth, typer.Argument(case_sensitive=False, help="The health to report.")
    ],
    namespace: NamespaceOption,
    service: ServiceOption,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    output: OutputOption = Output.table,
) -> None:
    """Report an instance's health (services created with --custom-health)."""
    with reporting(Subject(namespace=namespace, service=service, instance=instance)):
        client = connect(endpoint)
        service_id = _service(client, namespace, service)["Id"]
        client.call(
            "UpdateInstanceCustomHealthStatus",
            ServiceId=service_id,
            InstanceId=instance,
            Status=status.value.upper(),
        )
    if output is Output.json:
        emit_json({})
    else:
        say(f"instance {instance} is now {status.value.upper()}")


# -- discovery ----------------------------------------------------------------------------


class HealthFilter(StrEnum):
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    ALL = "ALL"
    HEALTHY_OR_ELSE_ALL = "HEALTHY_OR_ELSE_ALL"


def discover(
    namespace: Annotated[str, typer.Option("--namespace", metavar="NS", help="Namespace name.")],
    service: Annotated[str, typer.Option("--service", metavar="S", help="Service name.")],
    query: Annotated[
        list[str] | None,
        typer.Option(
            "--query",
            metavar="KEY=VALUE",
            help="Only instances with attribute KEY=VALUE; repeat, all must match.",
        ),
    ] = None,
    optional: Annotated[
        list[str] | None,
        typer.Option(
            "--optional",
            metavar="KEY=VALUE",
            help="Prefer instances with attribute KEY=VALUE; ignored when none has it.",
        ),
    ] = None,
    health: Annotated[
        HealthFilter | None,
        typer.Option("--health", case_sensitive=False, help="Health filter (server default: ALL)."),
    ] = None,
    max_results: Annotated[
        int | None,
        typer.Option("--max", metavar="N", min=1, max=1000, help="At most this many instances."),
    ] = None,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    output: OutputOption = Output.table,
) -> None:
    """Find a service's instances, as applications do (DiscoverInstances)."""
    with reporting(Subject(namespace=namespace, service=service)):
        params: dict[str, Any] = {"NamespaceName": namespace, "ServiceName": service}
        if query_parameters := parse_pairs("--query", query):
            params["QueryParameters"] = query_parameters
        if optional_parameters := parse_pairs("--optional", optional):
            params["OptionalParameters"] = optional_parameters
        if health is not None:
            params["HealthStatus"] = health.value
        if max_results is not None:
            params["MaxResults"] = max_results
        result = connect(endpoint).call("DiscoverInstances", **params)
    instances = result.get("Instances") or []
    if output is Output.json:
        emit_json(result)
    elif instances:
        print_table(discovered_table(instances))
    else:
        say(f"No instances of service '{service}' in namespace '{namespace}' match.")
