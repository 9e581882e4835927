"""``mapmesh explain``: the configuration a proxy enforces, with every default marked."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Annotated, Any

import typer

from mapmesh.cli.client import ApiError, HttpEndpoint
from mapmesh.cli.problems import UsageProblem, reporting
from mapmesh.cli.registry_commands import DEFAULT_ENDPOINT, EndpointOption

__all__ = ["explain"]


class _NativeClient(HttpEndpoint):
    """mapmesh's own ``/v1`` endpoints: JSON in, JSON out, ``{"message"}`` on errors."""

    def get(self, path: str, **query: str) -> dict[str, Any]:
        url = f"{self.endpoint}{path}?{urllib.parse.urlencode(query)}"
        status, body = self._send(urllib.request.Request(url, method="GET"))
        payload = json.loads(body) if body else {}
        if status >= 400:
            raise ApiError("NotFoundException" if status == 404 else "BadRequestException",
                           str(payload.get("message", body[:200])), status, "Explain")  # fmt: skip
        return dict(payload)


def explain(
    mesh: Annotated[str, typer.Option("--mesh", metavar="M", help="Mesh name.")],
    virtual_node: Annotated[
        str | None, typer.Option("--virtual-node", metavar="N", help="Virtual node name.")
    ] = None,
    virtual_gateway: Annotated[
        str | None, typer.Option("--virtual-gateway", metavar="G", help="Virtual gateway name.")
    ] = None,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    output: Annotated[
        str, typer.Option("--output", "-o", help="text for people, json for scripts.")
    ] = "text",
) -> None:
    """Show what a node's proxy (or a gateway) will enforce: routes, retries, timeouts,
    circuit-breaker limits, outlier detection and endpoints, defaults marked as defaults."""
    from mapmesh.xds.explain import render_text

    with reporting():
        if (virtual_node is None) == (virtual_gateway is None):
            raise UsageProblem("give exactly one of --virtual-node N or --virtual-gateway G")
        if output not in ("text", "json"):
            raise UsageProblem(f"--output must be text or json, got {output!r}")
        try:
            client = _NativeClient(endpoint)
        except ValueError as exc:
            raise UsageProblem(f"--endpoint: {exc}") from None
        identity = (
            {"virtualNode": virtual_node} if virtual_node else {"virtualGateway": virtual_gateway}
        )
        explanation = client.get("/v1/explain", mesh=mesh, **identity)
        if output == "json":
            typer.echo(json.dumps(explanation, indent=2, sort_keys=True))
        else:
            typer.echo(render_text(explanation))
