"""What went wrong and how to fix it: the CLI's one place that turns errors into messages.

Every expected failure of a registry command ends here. :func:`explain` maps a client error to
one sentence naming the problem in the user's own words (the names they typed, carried in a
:class:`Subject`) followed by the command that fixes it. :func:`reporting` prints that to
stderr and exits 1, or 2 for a :class:`UsageProblem` (bad flag values), so no traceback is
ever shown for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import typer

from mapmesh.cli.client import (
    ApiError,
    ClientError,
    EndpointUnreachable,
    OperationFailed,
    OperationTimedOut,
)

__all__ = ["Subject", "UsageProblem", "explain", "reporting"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageProblem(Exception):
    """The command line itself is wrong (exit code 2); the message says how to write it."""


@dataclass(frozen=True)
class Subject:
    """The names the user gave, so messages can repeat them."""

    namespace: str | None = None
    service: str | None = None
    instance: str | None = None

    @property
    def ns(self) -> str:
        return self.namespace or "NAMESPACE"

    @property
    def svc(self) -> str:
        return self.service or "SERVICE"


def explain(error: ClientError, subject: Subject) -> str:
    """One message: what went wrong, then how to fix it."""
    if isinstance(error, EndpointUnreachable):
        return (
            f"cannot reach the control plane at {error.endpoint} ({error.reason}). "
            "Start it with `mapmesh server` or pass --endpoint URL."
        )
    if isinstance(error, OperationTimedOut):
        op = error.operation
        return (
            f"operation {op.get('Id')} is still {op.get('Status')} after {error.waited:.0f}s. "
            "The change may still complete; check again in a moment, and look at the "
            "`mapmesh server` log if it never does."
        )
    if isinstance(error, OperationFailed):
        return _explain_code(error.code, error.message, subject, "")
    if isinstance(error, ApiError):
        return _explain_code(error.code, error.message, subject, error.operation)
    return str(error)


def _explain_code(code: str, message: str, s: Subject, operation: str) -> str:
    ns, svc = s.ns, s.svc
    list_instances = f"`mapmesh instance list --namespace {ns} --service {svc}`"
    if code == "NamespaceNotFound":
        name = s.namespace or message
        return f"namespace '{name}' not found. List namespaces with `mapmesh namespace list`."
    if code == "ServiceNotFound" and s.namespace is None:
        name = s.service or message
        return f"service '{name}' not found. List services with `mapmesh service list`."
    if code == "ServiceNotFound":
        return (
            f"service '{s.service or message}' not found in namespace '{ns}'. "
            f"List services with `mapmesh service list --namespace {ns}`."
        )
    if code == "InstanceNotFound":
        return (
            f"instance '{s.instance or message}' not found in service '{svc}'. "
            f"List instances with {list_instances}."
        )
    if code == "NamespaceAlreadyExists":
        return (
            f"a namespace named '{ns}' already exists. Pick another name, or see it with "
            "`mapmesh namespace list`."
        )
    if code == "ServiceAlreadyExists":
        return (
            f"service '{svc}' already exists in namespace '{ns}'. Pick another name, or see "
            f"it with `mapmesh service list --namespace {ns}`."
        )
    if code == "ResourceInUse" and s.service is None:
        return (
            f"namespace '{ns}' still has services. Delete them first; list them with "
            f"`mapmesh service list --namespace {ns}`."
        )
    if code == "ResourceInUse":
        return (
            f"service '{svc}' still has instances. Deregister them first; list them with "
            f"{list_instances}."
        )
    if code == "CustomHealthNotFound":
        return (
            f"service '{svc}' was not created with --custom-health, so its instances' health "
            "cannot be set by hand. Create the service with `mapmesh service create "
            f"{svc} --namespace {ns} --custom-health`."
        )
    if code in ("DuplicateRequest", "RequestLimitExceeded"):
        return f"the control plane is busy with this resource ({message}). Retry in a moment."
    if code == "InvalidInput":
        reason = message.rstrip(".")
        return f"the control plane rejected the request: {reason}. Check the values you passed."
    if code == "UnexpectedResponse":
        return (
            f"{message}. Is it a mapmesh control plane? Pass its URL with --endpoint "
            "(it listens on http://127.0.0.1:7070 by default)."
        )
    what = f"refused {operation}" if operation else "reported a failure"
    return f"the control plane {what}: {code}: {message}"


@contextmanager
def reporting(subject: Subject = Subject()) -> Iterator[None]:
    """Turn expected errors into a message on stderr and an exit code."""
    try:
        yield
    except UsageProblem as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except ClientError as exc:
        typer.echo(f"error: {explain(exc, subject)}", err=True)
        raise typer.Exit(EXIT_FAILURE) from None
