"""Run the mapmesh control plane with a small sample registry you can query.

Starts ``mapmesh server``, registers namespace ``corp`` with service ``worker`` (A and SRV
records, TTL 10 s, an HTTP health check) and three instances served by small HTTP apps this
script runs, then prints commands to try. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        body = f"worker on port {self.server.server_address[1]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit("mapmesh server exited; see the log above")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"mapmesh server did not answer on {url} within {timeout:.0f}s")


def seed(url: str) -> None:
    sd = boto3.client(
        "servicediscovery",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="demo",
        aws_secret_access_key="demo",
        config=Config(inject_host_prefix=False),
    )
    names = {n["Name"]: n["Id"] for n in sd.list_namespaces()["Namespaces"]}
    if "corp" in names:
        namespace_id = names["corp"]
    else:
        op = sd.create_private_dns_namespace(Name="corp", Vpc="vpc-local")["OperationId"]
        namespace_id = sd.get_operation(OperationId=op)["Operation"]["Targets"]["NAMESPACE"]
    services = {
        s["Name"]: s["Id"]
        for s in sd.list_services(Filters=[{"Name": "NAMESPACE_ID", "Values": [namespace_id]}])[
            "Services"
        ]
    }
    service_id = services.get("worker") or sd.create_service(
        Name="worker",
        NamespaceId=namespace_id,
        DnsConfig={
            "RoutingPolicy": "MULTIVALUE",
            "DnsRecords": [{"Type": "A", "TTL": 10}, {"Type": "SRV", "TTL": 10}],
        },
        HealthCheckConfig={"Type": "HTTP", "ResourcePath": "/health", "FailureThreshold": 1},
    )["Service"]["Id"]
    for index, env in enumerate(["prod", "prod", "staging"], start=1):
        sd.register_instance(
            ServiceId=service_id,
            InstanceId=f"worker-{index}",
            Attributes={
                "AWS_INSTANCE_IPV4": f"127.0.0.{index}",
                "AWS_INSTANCE_PORT": str(start_app_on(index)),
                "env": env,
            },
        )


_APP_PORTS: dict[int, int] = {}


def start_app_on(index: int) -> int:
    """Each instance gets its own small HTTP app (bound on 127.0.0.1, reachable via 127.0.0.x)."""
    if index not in _APP_PORTS:
        server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), _Health)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        _APP_PORTS[index] = int(server.server_address[1])
    return _APP_PORTS[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=7070)
    parser.add_argument("--dns-port", type=int, default=8053)
    parser.add_argument("--data-dir", default=str(ROOT / ".mapmesh" / "demo"))
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    mapmesh = str(ROOT / ".venv" / "bin" / "mapmesh")
    server = subprocess.Popen(
        [mapmesh, "server", "--data-dir", args.data_dir, "--port", str(args.port),
         "--dns-port", str(args.dns_port), "--health-interval", "2", "--health-timeout", "1"],
    )  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())
    try:
        wait_ready(url, server)
        seed(url)
        aws_env = (
            "AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_DEFAULT_REGION=us-east-1 "
            "AWS_DISABLE_HOST_PREFIX_INJECTION=true"
        )
        print(
            f"""
mapmesh control plane is running.
  Cloud Map API : {url}
  DNS           : 127.0.0.1 port {args.dns_port} (UDP and TCP)
  data          : {args.data_dir}

Try:
  {aws_env} .venv/bin/aws servicediscovery discover-instances \\
      --endpoint-url {url} --namespace-name corp --service-name worker \\
      --query-parameters env=prod
  dig @127.0.0.1 -p {args.dns_port} worker.corp A +short
  dig @127.0.0.1 -p {args.dns_port} worker.corp SRV
  .venv/bin/mapmesh discover --namespace corp --service worker --query env=prod

Press Ctrl-C to stop.
""",
            flush=True,
        )
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=15)
    os._exit(0)


if __name__ == "__main__":
    main()
