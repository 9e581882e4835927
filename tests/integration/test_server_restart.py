"""The server process: graceful shutdown, and acknowledged writes surviving kill -9."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

from tests.support import servicediscovery_client, start_server, stop_server


def test_sigterm_shuts_down_gracefully(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    assert stop_server(server, signal.SIGTERM) == 0
    messages = [
        json.loads(line)["msg"] for line in server.log().splitlines() if line.startswith("{")
    ]
    assert "control plane stopped" in messages


def test_acknowledged_registrations_survive_kill_9(tmp_path: Path) -> None:
    """Writers register instances until the server is killed; every acknowledged one is kept."""
    server = start_server(tmp_path)
    sd = servicediscovery_client(server.url)
    op = sd.create_http_namespace(Name="durable")["OperationId"]
    namespace_id = sd.get_operation(OperationId=op)["Operation"]["Targets"]["NAMESPACE"]
    service_id = sd.create_service(Name="worker", NamespaceId=namespace_id)["Service"]["Id"]

    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(worker: int) -> None:
        client = servicediscovery_client(server.url)
        for n in range(10_000):
            if stop.is_set():
                return
            instance_id = f"w{worker}-{n}"
            try:
                client.register_instance(
                    ServiceId=service_id, InstanceId=instance_id, Attributes={"n": str(n)}
                )
            except Exception:
                return  # the server died mid-request: not acknowledged
            with lock:
                acknowledged.append(instance_id)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=10)
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    assert len(acknowledged) >= 40

    restarted = start_server(tmp_path)
    try:
        sd = servicediscovery_client(restarted.url)
        found: set[str] = set()
        token: dict[str, Any] = {}
        while True:
            page = sd.list_instances(ServiceId=service_id, MaxResults=100, **token)
            found.update(i["Id"] for i in page["Instances"])
            if "NextToken" not in page:
                break
            token = {"NextToken": page["NextToken"]}
        missing = set(acknowledged) - found
        assert not missing, f"{len(missing)} acknowledged registrations lost"
        # Operations interrupted by the kill are finished after the restart.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pages = sd.get_paginator("list_operations").paginate()
            statuses = {o["Status"] for page in pages for o in page["Operations"]}
            if statuses <= {"SUCCESS", "FAIL"}:
                break
            time.sleep(0.05)
        assert statuses <= {"SUCCESS", "FAIL"}
    finally:
        stop_server(restarted)
