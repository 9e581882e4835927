"""The ``mapmesh`` registry commands, run as real subprocesses against a real control plane.

Each test is a short story told through the command line an operator would type; a boto3
client (the ``sd`` fixture) checks now and then that the CLI changed what it said it changed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from tests.support import ServerProcess, free_port

NAMESPACE_ID = re.compile(r"ns-[a-z0-9]{16}")
SERVICE_ID = re.compile(r"srv-[a-z0-9]{16}")


@dataclass
class Run:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self
        return json.loads(self.out)

    def rows(self) -> list[list[str]]:
        """A table's lines split into cells (cells hold no spaces except ATTRIBUTES)."""
        assert self.code == 0, self
        return [line.split() for line in self.out.splitlines() if line.strip()]

    def row(self, first: str) -> list[str]:
        matches = [r for r in self.rows() if r and r[0] == first]
        assert len(matches) == 1, (first, self.out)
        return matches[0]


def _env(endpoint: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAPMESH_")}
    env["COLUMNS"] = "200"  # rich folds tables to 80 columns when not on a terminal
    if endpoint is not None:
        env["MAPMESH_ENDPOINT"] = endpoint
    return env


def mapmesh(*args: str, endpoint: str | None = None, expect: int | None = 0) -> Run:
    """Run ``mapmesh ARGS`` with MAPMESH_ENDPOINT=endpoint; check the exit code if given."""
    proc = subprocess.run(
        [sys.executable, "-m", "mapmesh", *args],
        capture_output=True,
        text=True,
        env=_env(endpoint),
        timeout=60,
    )
    run = Run(args, proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in run.err, run
    if expect is not None:
        assert run.code == expect, run
    return run


def discovered_ids(run: Run) -> list[str]:
    return [i["InstanceId"] for i in run.json()["Instances"]]


def test_registry_journey(server: ServerProcess, unique: str, sd: Any) -> None:
    def cli(*args: str) -> Run:
        return mapmesh(*args, endpoint=server.url)

    ns = unique
    where = ("--namespace", ns, "--service", "worker")

    # The operator creates a namespace; the command waits and prints only the new id.
    ns_id = cli("namespace", "create", ns, "--description", "corp apps").out.strip()
    assert NAMESPACE_ID.fullmatch(ns_id)
    assert cli("namespace", "list").row(ns)[1:4] == [ns_id, "HTTP", "0"]
    listed = cli("namespace", "list", "--output", "json").json()["Namespaces"]
    assert {"Id": ns_id, "Name": ns, "Type": "HTTP", "Description": "corp apps"}.items() <= next(
        n for n in listed if n["Id"] == ns_id
    ).items()

    # A service whose instances report their own health.
    svc_id = cli("service", "create", "worker", "--namespace", ns, "--custom-health").out.strip()
    assert SERVICE_ID.fullmatch(svc_id)
    assert cli("service", "list", "--namespace", ns).row("worker")[1:] == [
        svc_id,
        ns,
        "-",
        "custom",
        "0",
    ]
    assert sd.get_service(Id=svc_id)["Service"]["HealthCheckCustomConfig"] == {}

    # Three instances with attributes; one of them goes unhealthy.
    for instance, ip, env in (("w1", "10.0.0.1", "prod"), ("w2", "10.0.0.2", "dev")):
        registered = cli(
            "instance",
            "register",
            instance,
            *where,
            "--ip",
            ip,
            "--port",
            "8080",
            "--attr",
            f"env={env}",
            "--attr",
            "tier=web",
        )
        assert "registered instance" in registered.out
    op = cli(
        "instance", "register", "w3", *where, "--ip", "10.0.0.3", "--attr", "env=prod", "-o", "json"
    ).json()["Operation"]
    assert (op["Status"], op["Type"], op["Targets"]["INSTANCE"]) == (
        "SUCCESS",
        "REGISTER_INSTANCE",
        "w3",
    )
    assert cli("instance", "health", *where, "w3", "unhealthy").out.strip() == (
        "instance w3 is now UNHEALTHY"
    )

    table = cli("instance", "list", *where)
    assert table.row("w1") == ["w1", "10.0.0.1:8080", "HEALTHY", "env=prod", "tier=web"]
    assert table.row("w3") == ["w3", "10.0.0.3", "UNHEALTHY", "env=prod"]
    listing = cli("instance", "list", *where, "-o", "json").json()
    assert listing["Status"] == {"w1": "HEALTHY", "w2": "HEALTHY", "w3": "UNHEALTHY"}
    assert [i["Id"] for i in listing["Instances"]] == ["w1", "w2", "w3"]

    # Discovery as an application does it: attribute query, then health filters.
    found = cli("discover", *where, "--query", "env=prod")
    assert [r[0] for r in found.rows()[2:]] == ["w1", "w3"]  # after header and rule
    assert found.row("w3")[2] == "UNHEALTHY"
    healthy = cli("discover", *where, "--query", "env=prod", "--health", "HEALTHY", "-o", "json")
    assert healthy.json()["Instances"] == [
        {
            "InstanceId": "w1",
            "NamespaceName": ns,
            "ServiceName": "worker",
            "HealthStatus": "HEALTHY",
            "Attributes": {
                "AWS_INSTANCE_IPV4": "10.0.0.1",
                "AWS_INSTANCE_PORT": "8080",
                "env": "prod",
                "tier": "web",
            },
        }
    ]
    assert isinstance(healthy.json()["InstancesRevision"], int)
    assert discovered_ids(cli("discover", *where, "--health", "unhealthy", "-o", "json")) == ["w3"]
    assert discovered_ids(
        cli("discover", *where, "--query", "env=prod", "--query", "tier=web", "-o", "json")
    ) == ["w1"]
    # --optional narrows when something matches and is ignored when nothing does.
    assert discovered_ids(cli("discover", *where, "--optional", "env=dev", "-o", "json")) == ["w2"]
    assert len(discovered_ids(cli("discover", *where, "--optional", "env=qa", "-o", "json"))) == 3
    assert len(discovered_ids(cli("discover", *where, "--max", "2", "-o", "json"))) == 2
    assert "No instances" in cli("discover", *where, "--query", "env=qa").out

    # w3 recovers; everyone is deregistered; the service and namespace are deleted.
    cli("instance", "health", *where, "w3", "HEALTHY")
    assert discovered_ids(cli("discover", *where, "--health", "HEALTHY", "-o", "json")) == [
        "w1",
        "w2",
        "w3",
    ]
    for instance in ("w1", "w2", "w3"):
        assert "deregistered instance" in cli("instance", "deregister", instance, *where).out
    assert "No instances" in cli("instance", "list", *where).out
    assert cli("service", "delete", "worker", "--namespace", ns).out.strip() == (
        f"deleted service worker ({svc_id})"
    )
    deleted = cli("namespace", "delete", ns, "-o", "json").json()["Operation"]
    assert (deleted["Type"], deleted["Status"]) == ("DELETE_NAMESPACE", "SUCCESS")
    listed = cli("namespace", "list", "-o", "json").json()["Namespaces"]
    assert ns_id not in {n["Id"] for n in listed}


def test_dns_namespace_and_service_settings(server: ServerProcess, unique: str, sd: Any) -> None:
    def cli(*args: str) -> Run:
        return mapmesh(*args, "--endpoint", server.url)  # the flag, not the environment

    domain = f"{unique}.local"
    created = cli(
        "namespace", "create", domain, "--type", "dns-private", "--ttl", "30", "-o", "json"
    ).json()["Namespace"]
    assert created["Type"] == "DNS_PRIVATE"
    assert created["Properties"]["DnsProperties"]["SOA"]["TTL"] == 30

    web = cli(
        "service",
        "create",
        "web",
        "--namespace",
        created["Id"],
        "--dns",
        "A,SRV",
        "--ttl",
        "5",
        "--routing",
        "weighted",
        "-o",
        "json",
    ).json()["Service"]
    assert web["DnsConfig"]["DnsRecords"] == [{"Type": "A", "TTL": 5}, {"Type": "SRV", "TTL": 5}]
    assert web["DnsConfig"]["RoutingPolicy"] == "WEIGHTED"

    # Defaults in a DNS namespace: A records, TTL 10, multivalue; plus an active HTTP check.
    api_id = cli(
        "service",
        "create",
        "api",
        "--namespace",
        domain,
        "--health-check",
        "http",
        "--health-path",
        "/health",
        "--failure-threshold",
        "2",
    ).out.strip()
    api = sd.get_service(Id=api_id)["Service"]
    assert api["DnsConfig"]["DnsRecords"] == [{"Type": "A", "TTL": 10}]
    assert api["DnsConfig"]["RoutingPolicy"] == "MULTIVALUE"
    assert api["HealthCheckConfig"] == {
        "Type": "HTTP",
        "ResourcePath": "/health",
        "FailureThreshold": 2,
    }
    # --dns none: discoverable through the API only.
    hidden = cli(
        "service", "create", "hidden", "--namespace", domain, "--dns", "none", "-o", "json"
    ).json()["Service"]
    assert hidden["Type"] == "HTTP" and "DnsConfig" not in hidden

    table = cli("service", "list", "--namespace", domain)
    assert table.row("web")[1:5] == [web["Id"], domain, "A(5s),SRV(5s)", "weighted"]
    assert table.row("api")[4:7] == ["multivalue", "http", "/health"]
    everything = cli("service", "list", "-o", "json").json()["Services"]
    assert {web["Id"], api_id, hidden["Id"]} <= {s["Id"] for s in everything}

    # Services and namespaces can be deleted by id as well as by name.
    for service_id in (web["Id"], api_id, hidden["Id"]):
        assert service_id in cli("service", "delete", service_id).out
    assert created["Id"] in cli("namespace", "delete", created["Id"]).out


def test_errors_say_what_went_wrong_and_how_to_fix_it(server: ServerProcess, unique: str) -> None:
    def fails(*args: str, expect: int = 1) -> str:
        run = mapmesh(*args, endpoint=server.url, expect=expect)
        assert run.out == ""
        return run.err.strip()

    # Nothing listens there: exit 1 and a hint, whether the endpoint comes from flag or env.
    dead = f"http://127.0.0.1:{free_port()}"
    unreachable = (
        f"error: cannot reach the control plane at {dead} (connection refused). "
        "Start it with `mapmesh server` or pass --endpoint URL."
    )
    assert fails("namespace", "list", "--endpoint", dead) == unreachable
    run = mapmesh("discover", "--namespace", "corp", "--service", "w", endpoint=dead, expect=1)
    assert run.err.strip() == unreachable

    missing = f"{unique}-missing"
    not_found = (
        f"error: namespace '{missing}' not found. List namespaces with `mapmesh namespace list`."
    )
    assert fails("discover", "--namespace", missing, "--service", "worker") == not_found
    assert fails("service", "list", "--namespace", missing) == not_found
    assert fails("instance", "list", "--namespace", missing, "--service", "worker") == not_found

    mapmesh("namespace", "create", unique, endpoint=server.url)
    mapmesh("service", "create", "plain", "--namespace", unique, endpoint=server.url)
    assert fails("discover", "--namespace", unique, "--service", "nope") == (
        f"error: service 'nope' not found in namespace '{unique}'. "
        f"List services with `mapmesh service list --namespace {unique}`."
    )
    assert fails(
        "instance", "deregister", "ghost", "--namespace", unique, "--service", "plain"
    ) == (
        "error: instance 'ghost' not found in service 'plain'. List instances with "
        f"`mapmesh instance list --namespace {unique} --service plain`."
    )
    assert "--custom-health" in fails(
        "instance", "health", "ghost", "healthy", "--namespace", unique, "--service", "plain"
    )
    assert fails("namespace", "create", unique).startswith(
        f"error: a namespace named '{unique}' already exists."
    )
    assert "still has services" in fails("namespace", "delete", unique)

    # Usage errors exit 2 and name the flag and the value.
    query = ("discover", "--namespace", unique, "--service", "plain", "--query")
    assert fails(*query, "env", expect=2) == "error: --query expects KEY=VALUE, got 'env'"
    assert fails(*query, "=prod", expect=2) == "error: --query expects KEY=VALUE, got '=prod'"
    assert "--ttl" in fails("namespace", "create", f"{unique}-x", "--ttl", "5", expect=2)
    assert "--ip expects an IPv4 or IPv6 address, got '10.0.0'" in fails(
        "instance",
        "register",
        "i",
        "--namespace",
        unique,
        "--service",
        "plain",
        "--ip",
        "10.0.0",
        expect=2,
    )
    assert "http namespace" in fails(
        "service", "create", "s", "--namespace", unique, "--dns", "A", expect=2
    )
    assert "--endpoint must be an http:// or https:// URL" in fails(
        "namespace", "list", "--endpoint", "localhost:7070", expect=2
    )
    assert "yaml" in fails("namespace", "list", "--output", "yaml", expect=2)  # click's own


COMMANDS = [
    (),
    ("namespace",),
    ("namespace", "list"),
    ("namespace", "create"),
    ("namespace", "delete"),
    ("service",),
    ("service", "list"),
    ("service", "create"),
    ("service", "delete"),
    ("instance",),
    ("instance", "list"),
    ("instance", "register"),
    ("instance", "deregister"),
    ("instance", "health"),
    ("discover",),
]


def test_help_works_for_every_command() -> None:
    # All at once: each is a separate interpreter start-up.
    procs = {
        command: subprocess.Popen(
            [sys.executable, "-m", "mapmesh", *command, "--help"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(None),
        )
        for command in COMMANDS
    }
    helps: dict[tuple[str, ...], str] = {}
    for command, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, (command, err)
        usage = next(line for line in out.splitlines() if "Usage:" in line).split()
        # "Usage: mapmesh ..." or, run as a module, "Usage: python -m mapmesh ..."
        assert usage[usage.index("mapmesh") + 1 :][: len(command)] == list(command), usage
        helps[command] = out
    for command in COMMANDS[2:]:
        if len(command) == 2 or command == ("discover",):
            assert "--endpoint" in helps[command] and "--output" in helps[command], command
    # DESIGN.md's command-line contract: mapmesh discover --namespace NS --service S --query k=v
    for flag in ("--namespace", "--service", "--query"):
        assert flag in helps[("discover",)]
