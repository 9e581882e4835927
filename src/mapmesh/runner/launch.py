"""What one replica runs and the environment its app gets (pure).

A :class:`LaunchSpec` is everything that, when it changes, means a replica must be replaced:
the command, the working directory, the file's environment, the health check and the services
it calls. Two specs compare equal exactly when a running replica may be kept, so a rollout
is ``spec != replica.spec``.

The app's environment (:func:`app_environment`) is the runner's own environment (with the
runner's interpreter first on PATH), then one
``<SERVICE>_URL`` per called service (``AUTH_URL=http://auth.social.local``), then the file's
``env``, then the variables the runner owns (``appfile.RESERVED_ENV``): the port to listen
on, the sidecar as HTTP proxy, and who the replica is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mapmesh.runner.appfile import AppFile, HealthCheck
from mapmesh.runner.derive import virtual_service

__all__ = ["LaunchSpec", "app_environment", "launch_specs", "nodes_named", "url_variable"]


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    mesh: str
    namespace: str
    service: str
    version: str | None
    node: str
    command: tuple[str, ...]
    cwd: str
    env: tuple[tuple[str, str], ...]  # the URLs of called services, then the file's env
    health: HealthCheck


def url_variable(service: str) -> str:
    """``auth`` → ``AUTH_URL``; ``user-db`` → ``USER_DB_URL``."""
    return service.upper().replace("-", "_") + "_URL"


def launch_specs(app: AppFile, cwd: Path) -> dict[str, LaunchSpec]:
    """One spec per virtual node (service, or service version), by node name."""
    specs: dict[str, LaunchSpec] = {}
    for service in app.services:
        urls = tuple(
            (url_variable(c), f"http://{virtual_service(c, app.namespace)}") for c in service.calls
        )
        for version in service.versions:
            specs[version.node] = LaunchSpec(
                mesh=app.app,
                namespace=app.namespace,
                service=service.name,
                version=version.name,
                node=version.node,
                command=version.command,
                cwd=str(cwd),
                env=(*urls, *version.env),
                health=service.health,
            )
    return specs


def app_environment(
    spec: LaunchSpec,
    replica: int,
    port: int,
    outbound_port: int,
    inherited: Mapping[str, str],
    bin_dir: str | None = None,
) -> dict[str, str]:
    """The complete environment of one replica's app process; ``bin_dir`` (the directory of
    the runner's interpreter) goes first on PATH, so ``python`` there is the runner's."""
    env = dict(inherited)
    if bin_dir:
        env["PATH"] = os.pathsep.join([bin_dir, *filter(None, [env.get("PATH")])])
    env.update(spec.env)
    proxy = f"http://127.0.0.1:{outbound_port}"
    env.update(
        {
            "PORT": str(port),
            "HTTP_PROXY": proxy,
            "http_proxy": proxy,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "MAPMESH_SERVICE": spec.service,
            "MAPMESH_VERSION": spec.version or "",
            "MAPMESH_REPLICA": str(replica),
        }
    )
    return env


def nodes_named(name: str, specs: Mapping[str, LaunchSpec]) -> list[str] | str:
    """The node(s) a user means by ``name`` (``scale NAME=N``), or why it means none: a
    service without versions is its node; a versioned one must be named by version."""
    if name in specs:
        return [name]
    versions = sorted(node for node, spec in specs.items() if spec.service == name)
    if not versions:
        services = sorted({spec.service for spec in specs.values()})
        return f"no service {name!r} in the app; services: {', '.join(services)}"
    return f"{name} has versions; scale one of them: " + ", ".join(f"{n}=N" for n in versions)
