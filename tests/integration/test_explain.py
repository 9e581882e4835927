"""``mapmesh explain``: the walkthrough's effective configuration, defaults marked as such."""

from __future__ import annotations

import json

from tests.integration.test_mesh_yaml import mapmesh, walkthrough
from tests.support import ServerProcess


def test_explain_shows_resolved_policy_and_where_it_came_from(
    server: ServerProcess, unique: str
) -> None:
    assert mapmesh(server, "apply", "-f", "-", stdin=walkthrough(unique)).code == 0

    text = mapmesh(server, "explain", "--mesh", unique, "--virtual-node", "frontend")
    assert text.code == 0, text.err
    assert "backend worker.corp → virtualRouter worker" in text.out
    assert "weight 90" in text.out and "weight 10" in text.out
    assert "max requests 1024 (default)" in text.out  # a hidden App Mesh default, made visible
    assert "per try timeout 2 s" in text.out

    as_json = mapmesh(
        server, "explain", "--mesh", unique, "--virtual-node", "frontend", "-o", "json"
    )
    explanation = json.loads(as_json.out)
    assert "default" in as_json.out and "configured" in as_json.out
    assert explanation

    gateway = mapmesh(server, "explain", "--mesh", unique, "--virtual-gateway", "ingress")
    assert gateway.code == 0, gateway.err
    assert "frontend.corp" in gateway.out

    missing = mapmesh(server, "explain", "--mesh", unique, "--virtual-node", "nobody")
    assert missing.code == 1
    assert "not found" in missing.err
    both = mapmesh(server, "explain", "--mesh", unique)
    assert both.code == 2
