"""The seed journey with the real aws CLI v1 as a subprocess against the control plane.

What these tests pin down about aws CLI v1 (awscli 1.46, which vendors its own botocore
under ``awscli/botocore``):

- it speaks JSON 1.1 to Cloud Map (``POST /``, ``X-Amz-Target``): its vendored model lists only
  the ``json`` protocol, while boto3's botocore prefers RPC v2 CBOR for the same service;
- DiscoverInstances carries the endpoint host prefix ``data-``, so with ``--endpoint-url
  http://127.0.0.1:PORT`` the CLI calls ``http://data-127.0.0.1:PORT/`` and cannot connect;
- it honours ``AWS_DISABLE_HOST_PREFIX_INJECTION=true`` (config key
  ``disable_host_prefix_injection`` in its config store), which makes discovery work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServerProcess

AWS = str(Path(sys.executable).with_name("aws"))


@pytest.fixture
def aws_env(tmp_path: Path) -> dict[str, str]:
    """Dummy credentials, no user config, no retries (a failure shows at once)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    empty = tmp_path / "aws-empty"
    empty.write_text("")
    env.update(
        AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY="secret",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_DISABLE_HOST_PREFIX_INJECTION="true",
        AWS_CONFIG_FILE=str(empty),
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_RETRY_MODE="standard",
        AWS_MAX_ATTEMPTS="1",
        AWS_PAGER="",
    )
    return env


def aws(
    server: ServerProcess, env: dict[str, str], *args: str, expect: int | None = 0
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [AWS, "--endpoint-url", server.url, "--output", "json", "servicediscovery", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if expect is not None:
        assert proc.returncode == expect, (args, proc.stdout, proc.stderr)
    return proc


def aws_json(server: ServerProcess, env: dict[str, str], *args: str) -> Any:
    return json.loads(aws(server, env, *args).stdout)


def wait_operation(server: ServerProcess, env: dict[str, str], operation_id: str) -> Any:
    deadline = time.monotonic() + 10
    while True:
        op = aws_json(server, env, "get-operation", "--operation-id", operation_id)["Operation"]
        if op["Status"] in ("SUCCESS", "FAIL") or time.monotonic() > deadline:
            assert op["Status"] == "SUCCESS", op
            return op
        time.sleep(0.1)


def test_seed_journey_with_the_aws_cli(
    server: ServerProcess, aws_env: dict[str, str], unique: str
) -> None:
    namespace = f"{unique}.corp"

    created = aws_json(
        server, aws_env, "create-private-dns-namespace",
        "--name", namespace, "--vpc", "vpc-local",
        "--properties", "DnsProperties={SOA={TTL=60}}",
    )  # fmt: skip
    ns_id = wait_operation(server, aws_env, created["OperationId"])["Targets"]["NAMESPACE"]
    ns = aws_json(server, aws_env, "get-namespace", "--id", ns_id)["Namespace"]
    assert (ns["Name"], ns["Type"]) == (namespace, "DNS_PRIVATE")
    assert ns["Properties"]["DnsProperties"]["SOA"] == {"TTL": 60}

    service = aws_json(
        server, aws_env, "create-service",
        "--name", "worker", "--namespace-id", ns_id,
        "--dns-config", "RoutingPolicy=MULTIVALUE,DnsRecords=[{Type=A,TTL=10}]",
    )["Service"]  # fmt: skip
    assert service["Name"] == "worker"
    assert service["DnsConfig"]["DnsRecords"] == [{"Type": "A", "TTL": 10}]

    for instance, ip, env in (("w1", "10.0.0.1", "prod"), ("w2", "10.0.0.2", "dev")):
        registered = aws_json(
            server, aws_env, "register-instance",
            "--service-id", service["Id"], "--instance-id", instance,
            "--attributes", f"AWS_INSTANCE_IPV4={ip},AWS_INSTANCE_PORT=8080,env={env}",
        )  # fmt: skip
        wait_operation(server, aws_env, registered["OperationId"])

    discovered = aws_json(
        server, aws_env, "discover-instances",
        "--namespace-name", namespace, "--service-name", "worker",
        "--query-parameters", "env=prod",
    )  # fmt: skip
    assert discovered["Instances"] == [
        {
            "InstanceId": "w1",
            "NamespaceName": namespace,
            "ServiceName": "worker",
            "HealthStatus": "UNKNOWN",  # no health check configured
            "Attributes": {
                "AWS_INSTANCE_IPV4": "10.0.0.1",
                "AWS_INSTANCE_PORT": "8080",
                "env": "prod",
            },
        }
    ]
    assert isinstance(discovered["InstancesRevision"], int)

    # The mapmesh CLI, speaking the same protocol itself, sees exactly the same answer.
    ours = subprocess.run(
        [sys.executable, "-m", "mapmesh", "discover", "--namespace", namespace,
         "--service", "worker", "--query", "env=prod", "--output", "json",
         "--endpoint", server.url],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(ours.stdout) == discovered

    # Errors arrive as Cloud Map's exceptions.
    missing = aws(
        server, aws_env, "discover-instances",
        "--namespace-name", f"{unique}-missing", "--service-name", "worker", expect=None,
    )  # fmt: skip
    assert missing.returncode != 0
    assert "(NamespaceNotFound)" in missing.stderr


def test_discovery_needs_host_prefix_injection_disabled(
    server: ServerProcess, aws_env: dict[str, str], unique: str
) -> None:
    """Without the variable the CLI prefixes the endpoint's host with ``data-``."""
    del aws_env["AWS_DISABLE_HOST_PREFIX_INJECTION"]
    args = ("discover-instances", "--namespace-name", unique, "--service-name", "worker")
    refused = aws(server, aws_env, *args, expect=None)
    assert refused.returncode != 0
    assert f"http://data-127.0.0.1:{server.port}/" in refused.stderr

    aws_env["AWS_DISABLE_HOST_PREFIX_INJECTION"] = "true"
    reached = aws(server, aws_env, *args, expect=None)
    assert "(NamespaceNotFound)" in reached.stderr  # the request reached the control plane


def test_the_aws_cli_speaks_json_1_1(server: ServerProcess, aws_env: dict[str, str]) -> None:
    debug = subprocess.run(
        [AWS, "--debug", "--endpoint-url", server.url, "servicediscovery", "list-namespaces",
         "--max-items", "1"],
        capture_output=True, text=True, env=aws_env, timeout=60, check=True,
    )  # fmt: skip
    sent = next(line for line in debug.stderr.splitlines() if "Sending http request" in line)
    assert f"url={server.url}/," in sent
    assert "'X-Amz-Target': b'Route53AutoNaming_v20170314.ListNamespaces'" in sent
    assert "'Content-Type': b'application/x-amz-json-1.1'" in sent
