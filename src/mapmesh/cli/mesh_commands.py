"""``mapmesh apply|diff|delete -f FILE`` and ``mapmesh get KIND``: the mesh as YAML files.

The file format, the order resources are applied in and the comparison that decides between
``created``, ``configured`` and ``unchanged`` live in :mod:`mapmesh.cli.meshfile`, which does
no I/O. The commands here are its drivers: read the files, ask the control plane (over the App
Mesh API, :mod:`mapmesh.cli.appmesh_client`) what exists, carry out each plan, print a line.

Failures name the document (``file:line``, the line of the field when the server names one),
say what to fix, and say what was already done: apply stops at the first refused document,
and the resources applied before it stay applied.

Exit codes: 0 done; 1 an error (``diff``: there are changes); 2 a usage error (``diff``: any
error, as ``kubectl diff`` answers >1 on errors).

Options are those of the registry commands (``--endpoint``, ``--output``). The App Mesh model
is loaded only when one of these commands runs, so other commands start as fast as before.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from mapmesh.cli.client import ApiError, ClientError
from mapmesh.cli.problems import (
    EXIT_FAILURE,
    EXIT_USAGE,
    Subject,
    UsageProblem,
    explain,
    reporting,
)
from mapmesh.cli.registry_commands import (
    DEFAULT_ENDPOINT,
    EndpointOption,
    OutputOption,
)
from mapmesh.cli.render import Output, emit_json, print_table, say

if TYPE_CHECKING:
    from mapmesh.cli.appmesh_client import AppMeshClient
    from mapmesh.cli.meshfile import Change, Document
    from mapmesh.mesh.kinds import Kind, ResourceId

__all__ = ["GetOutput", "apply", "carry_out", "delete", "diff", "get", "live_change"]

FilesOption = Annotated[
    list[str],
    typer.Option(
        "--filename",
        "-f",
        metavar="FILE",
        help="Mesh file (YAML, one resource per document); '-' reads stdin, a directory its "
        "*.yaml and *.yml files. Repeat for several.",
    ),
]


class GetOutput(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


class _Stop(Exception):
    """Already explained on stderr; exit with ``code``."""

    def __init__(self, code: int) -> None:
        self.code = code


@contextmanager
def _exits(failure: int = EXIT_FAILURE) -> Iterator[None]:
    """Like :func:`~mapmesh.cli.problems.reporting`, with ``failure`` as the error exit code."""
    try:
        with reporting():
            yield
    except _Stop as stop:
        raise typer.Exit(stop.code) from None
    except typer.Exit as done:
        if done.exit_code == EXIT_FAILURE and failure != EXIT_FAILURE:
            raise typer.Exit(failure) from None
        raise


def _fail(*lines: str, code: int = EXIT_FAILURE) -> _Stop:
    typer.echo("error: " + "\n".join(lines), err=True)
    return _Stop(code)


def _connect(endpoint: str) -> AppMeshClient:
    from mapmesh.cli.appmesh_client import AppMeshClient

    try:
        return AppMeshClient(endpoint)
    except ValueError as exc:
        raise UsageProblem(f"--{exc}") from None


# -- reading files ------------------------------------------------------------------------


def _read(names: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(name, text) of every file ``-f`` named: ``-`` is stdin, a directory its YAML files."""
    for name in names:
        if name == "-":
            yield "<stdin>", sys.stdin.read()
            continue
        path = Path(name)
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
        for file in files:
            try:
                yield str(file), file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                raise UsageProblem(f"-f {file}: cannot read it ({reason})") from None


def _load(names: Sequence[str], code: int = EXIT_FAILURE) -> list[Document]:
    from mapmesh.cli.meshfile import MeshFileError, check_unique, parse

    documents: list[Document] = []
    try:
        for name, text in _read(names):
            documents += parse(text, name)
        check_unique(documents)
    except MeshFileError as exc:
        raise _fail(
            str(exc), "note: nothing was sent; fix the file and run again.", code=code
        ) from None
    if not documents:
        raise _fail(f"no resources in {', '.join(names)}: every document is empty.", code=code)
    return documents


# -- apply, diff, delete ------------------------------------------------------------------


def _hint(error: ApiError, verb: str) -> str:
    if error.code == "BadRequestException":
        return f"Fix that in the document and {verb} again."
    if error.code == "NotFoundException":
        return (
            "Add what is missing to the files (apply creates dependencies first) "
            "or create it first."
        )
    if error.code == "ConflictException":
        return f"Another client changed it at the same moment; {verb} again."
    if error.code == "ResourceInUseException":
        return "Delete what uses it first, or add those resources to the files you delete."
    return f"Fix the document and {verb} again."


def _document_error(error: ClientError, document: Document, verb: str) -> str:
    """``file:line (document N, Kind mesh/name): <what the server said>. <what to do>``."""
    from mapmesh.cli.meshfile import field_path

    if not isinstance(error, ApiError) or error.code == "UnexpectedResponse":
        return explain(error, Subject())  # the endpoint's fault, not the document's
    line = document.line_of(field_path(error.message))
    where = f"{document.source.at(line)} (document {document.source.index}, {document.label})"
    message = error.message.rstrip(".") or "no reason given"
    return f"{where}: {error.operation} refused: {error.code}: {message}. {_hint(error, verb)}"


def _count(n: int) -> str:
    return f"{n} resource" + ("" if n == 1 else "s")


def _were(n: int) -> str:
    return "was" if n == 1 else "were"


@dataclass
class _Run:
    """One apply or delete going through ``ordered``: its results, and how to stop it."""

    ordered: list[Document]
    verb: str  # "apply"
    past: str  # "applied"
    output: Output
    results: list[dict[str, Any]] = field(default_factory=list)

    def record(self, document: Document, result: str, data: dict[str, Any] | None) -> None:
        self.results.append(_result(document, result, data))
        if self.output is Output.table:
            suffix = " (nothing to delete)" if data is None and self.verb == "delete" else ""
            say(f"{document.label} {result}{suffix}")

    def finish(self) -> None:
        if self.output is Output.json:
            emit_json({"results": self.results})

    def stop(self, error: ClientError, position: int) -> _Stop:
        """Report ``error`` at ``ordered[position]``, with what was done before it."""
        self.finish()
        document = self.ordered[position]
        lines = [_document_error(error, document, self.verb)]
        if isinstance(error, ApiError) or position:
            lines.append(self._progress(position))
        return _fail(*lines)

    def _progress(self, position: int) -> str:
        """``note: 2 resources before it (...) were applied and stay applied; 1 after...``."""
        done, pending, past = self.ordered[:position], len(self.ordered) - position - 1, self.past
        if done:
            names = ", ".join(d.label for d in done[:4]) + (", ..." if len(done) > 4 else "")
            stays = "stays" if len(done) == 1 else "stay"
            keep = f" and {stays} {past}" if self.verb == "apply" else ""
            before = f"{_count(len(done))} before it ({names}) {_were(len(done))} {past}{keep}"
        else:
            before = f"nothing was {past}"
        after = f"; {_count(pending)} after it {_were(pending)} not {past}" if pending else ""
        return f"note: {before}{after}."


def live_change(client: AppMeshClient, document: Document) -> tuple[Change, dict[str, Any] | None]:
    """The plan for ``document`` and the server's data for it (None: it does not exist)."""
    from mapmesh.cli.meshfile import plan, tags_from_wire
    from mapmesh.mesh.extensions import SUPPORTED

    try:
        data = client.describe(document.id)
    except ApiError as exc:
        if exc.code != "NotFoundException":
            raise
        return plan(document, None), None
    tags = None
    if document.tags is not None:
        tags = tags_from_wire(client.tags(str(data["metadata"]["arn"])))
    extensions = client.extensions(document.id) if document.id.kind in SUPPORTED else None
    return plan(document, data.get("spec") or {}, tags, extensions), data


def carry_out(client: AppMeshClient, change: Change, data: dict[str, Any] | None) -> dict[str, Any]:
    """Do what ``change`` says; the resource's data afterwards."""
    from mapmesh.cli.meshfile import Action, tags_to_wire

    document = change.document
    if change.action is Action.CREATE or data is None:
        tags = tags_to_wire(document.tags) if document.tags else None
        data = client.create(document.id, document.spec, tags)
        if document.extensions:
            client.set_extensions(document.id, document.extensions)
        return data
    if change.spec_changed:
        data = client.update(document.id, document.spec)
    if change.extensions_changed:  # after the spec: a listener's limit needs its listener
        client.set_extensions(document.id, document.extensions)
    arn = str(data["metadata"]["arn"])
    if change.tags_to_set:
        client.tag(arn, tags_to_wire(change.tags_to_set))
    if change.tags_to_remove:
        client.untag(arn, list(change.tags_to_remove))
    return data


def _result(document: Document, result: str, data: dict[str, Any] | None) -> dict[str, Any]:
    kind = document.kind
    out: dict[str, Any] = {"kind": kind.title, "mesh": document.id.mesh}
    if kind.parent:
        out[kind.parent] = document.id.parent
    out["name"] = document.id.name
    out["result"] = result
    if data is not None:
        out["version"] = data.get("metadata", {}).get("version")
    return out


def apply(
    files: FilesOption,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    output: OutputOption = Output.table,
) -> None:
    """Create missing resources and update changed ones, dependencies first."""
    from mapmesh.cli.meshfile import Action, apply_order

    with _exits():
        run = _Run(apply_order(_load(files)), "apply", "applied", output)
        client = _connect(endpoint)
        for position, document in enumerate(run.ordered):
            try:
                change, data = live_change(client, document)
                if change.action is not Action.UNCHANGED:
                    data = carry_out(client, change, data)
            except ClientError as exc:
                raise run.stop(exc, position) from None
            run.record(document, change.action.value, data)
        run.finish()


def diff(
    files: FilesOption,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
) -> None:
    """Show what apply would change; exit 0 when nothing, 1 when something, 2 on errors."""
    from mapmesh.cli.meshfile import apply_order

    changed = False
    with _exits(EXIT_USAGE):
        client = _connect(endpoint)
        for document in apply_order(_load(files, EXIT_USAGE)):
            try:
                change, _ = live_change(client, document)
            except ClientError as exc:
                raise _fail(_document_error(exc, document, "diff"), code=EXIT_USAGE) from None
            text = change.diff()
            if text:
                sys.stdout.write(text)
                changed = True
    raise typer.Exit(1 if changed else 0)


def delete(
    files: FilesOption,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    output: OutputOption = Output.table,
) -> None:
    """Delete the files' resources, users before what they use; missing ones are skipped."""
    from mapmesh.cli.meshfile import delete_order

    with _exits():
        run = _Run(delete_order(_load(files)), "delete", "deleted", output)
        client = _connect(endpoint)
        for position, document in enumerate(run.ordered):
            try:
                run.record(document, "deleted", client.delete(document.id))
            except ApiError as exc:
                if exc.code != "NotFoundException":
                    raise run.stop(exc, position) from None
                run.record(document, "not found", None)
            except ClientError as exc:
                raise run.stop(exc, position) from None
        run.finish()


# -- get ----------------------------------------------------------------------------------


def _words(kind: Kind, plural: bool = False) -> str:
    """``virtual node`` / ``virtual nodes`` / ``meshes``."""
    words = "".join(f" {c.lower()}" if c.isupper() else c for c in kind.title).strip()
    if not plural:
        return words
    return words + ("es" if words.endswith("h") else "s")


def _resolve_kind(text: str) -> Kind:
    from mapmesh.mesh.kinds import KINDS

    wanted = text.replace("-", "").replace("_", "").lower()
    for kind in KINDS.values():
        if wanted in (kind.name.lower(), kind.plural.lower()):
            return kind
    names = ", ".join(k.title for k in KINDS.values())
    raise UsageProblem(
        f"unknown kind {text!r}; one of {names} (any case, singular or plural, e.g. virtual-nodes)"
    )


def _scope(
    kind: Kind, name: str | None, mesh: str | None, router: str | None, gateway: str | None
) -> str | None:
    """The parent the user named; checks the flags make sense for ``kind``."""
    flags = {
        "virtualRouter": ("--virtual-router", "routes", router),
        "virtualGateway": ("--virtual-gateway", "gateway routes", gateway),
    }
    for parent_kind, (flag, children, value) in flags.items():
        if value is not None and kind.parent != parent_kind:
            raise UsageProblem(f"{flag} selects {children}, not {_words(kind, True)}; drop it")
    if kind.name == "mesh":
        if mesh is not None:
            raise UsageProblem("--mesh selects resources in a mesh; for a mesh use `get mesh NAME`")
        return None
    if mesh is None:
        raise UsageProblem(f"{_words(kind, True)} live in a mesh: add --mesh M")
    if kind.parent is None:
        return None
    flag, _, parent = flags[kind.parent]
    if name is not None and parent is None:
        raise UsageProblem(
            f"{_words(kind)} names are unique per {_words_of(kind.parent)}: add {flag} NAME"
        )
    return parent


def _rid(kind: Kind, item: dict[str, Any]) -> ResourceId:
    from mapmesh.mesh.kinds import ResourceId

    parent = str(item[kind.parent_field]) if kind.parent_field else None
    return ResourceId(kind.name, str(item["meshName"]), parent, str(item[kind.name_field]))


def _refs(client: AppMeshClient, kind: Kind, mesh: str, parent: str | None) -> list[Any]:
    """Every resource of ``kind``; routes of every router when no router is named."""
    if kind.parent is None or parent is not None:
        return client.list_refs(kind.name, mesh, parent)
    from mapmesh.mesh.kinds import KINDS

    parents = client.list_refs(kind.parent, mesh)
    key = KINDS[kind.parent].name_field
    return [ref for p in parents for ref in client.list_refs(kind.name, mesh, str(p[key]))]


def _when(value: Any) -> str:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(value or "")


def _table(kind: Kind, items: Sequence[dict[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    headers = ["NAME", *([] if kind.name == "mesh" else ["MESH"])]
    if kind.parent:
        headers.append(_words_of(kind.parent).upper())
    for header in (*headers, "VERSION", "UPDATED (UTC)"):
        table.add_column(header, no_wrap=True)
    for item in items:
        metadata = item.get("metadata", item)  # a <Kind>Data or a <Kind>Ref
        rid = _rid(kind, item)
        cells = [rid.name, *([] if kind.name == "mesh" else [rid.mesh])]
        if kind.parent:
            cells.append(rid.parent or "")
        cells += [str(metadata.get("version", "")), _when(metadata.get("lastUpdatedAt"))]
        table.add_row(*cells)
    return table


def _words_of(kind_name: str) -> str:
    from mapmesh.mesh.kinds import KINDS

    return _words(KINDS[kind_name])


def _not_found(
    client: AppMeshClient, kind: Kind, mesh: str, parent: str | None, error: ApiError
) -> str:
    """Say which of mesh, parent or resource is missing, and how to list what exists."""
    from mapmesh.mesh.kinds import ResourceId

    missing = error.message.rstrip(".") or "not found"
    listing = f"mapmesh get {_words(kind, True).replace(' ', '-')} --mesh {mesh}"
    if kind.name != "mesh":
        try:
            client.describe(ResourceId("mesh", mesh, None, mesh))
        except ApiError:
            return f"mesh {mesh!r} not found. List meshes with `mapmesh get meshes`."
    else:
        listing = "mapmesh get meshes"
    if kind.parent and parent is not None:
        parent_words = _words_of(kind.parent)
        try:
            client.describe(ResourceId(kind.parent, mesh, None, parent))
        except ApiError:
            return (
                f"{parent_words} {parent!r} not found in mesh {mesh!r}. List them with "
                f"`mapmesh get {parent_words.replace(' ', '-')}s --mesh {mesh}`."
            )
        listing += f" --{parent_words.replace(' ', '-')} {parent}"
    return f"{missing}. List what exists with `{listing}`."


def get(
    kind_name: Annotated[
        str,
        typer.Argument(
            metavar="KIND",
            help="mesh, virtual-node, virtual-service, virtual-router, route, virtual-gateway "
            "or gateway-route (any case, singular or plural).",
        ),
    ],
    name: Annotated[str | None, typer.Argument(help="Show this resource only.")] = None,
    mesh: Annotated[
        str | None, typer.Option("--mesh", metavar="M", help="The mesh (all kinds but mesh).")
    ] = None,
    virtual_router: Annotated[
        str | None,
        typer.Option("--virtual-router", metavar="R", help="Routes of this virtual router."),
    ] = None,
    virtual_gateway: Annotated[
        str | None,
        typer.Option("--virtual-gateway", metavar="G", help="Gateway routes of this gateway."),
    ] = None,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    output: Annotated[
        GetOutput,
        typer.Option(
            "--output",
            "-o",
            case_sensitive=False,
            help="table for people; json: the API's shapes; yaml: mesh-file documents "
            "that `mapmesh apply -f` takes back.",
        ),
    ] = GetOutput.table,
) -> None:
    """List resources of a kind, or show one."""
    from mapmesh.cli.meshfile import document_from_data, dump_documents, tags_from_wire
    from mapmesh.mesh.extensions import SUPPORTED
    from mapmesh.mesh.kinds import ResourceId

    with _exits():
        kind = _resolve_kind(kind_name)
        parent = _scope(kind, name, mesh, virtual_router, virtual_gateway)
        client = _connect(endpoint)
        mesh_name = (name if kind.name == "mesh" else mesh) or ""
        documents: list[dict[str, Any]] = []
        try:
            if name is not None:
                items = [client.describe(ResourceId(kind.name, mesh_name, parent, name))]
            else:
                items = _refs(client, kind, mesh_name, parent)
            if output is GetOutput.yaml:
                datas = (
                    items if name is not None else [client.describe(_rid(kind, i)) for i in items]
                )
                documents = [
                    document_from_data(
                        kind,
                        d,
                        tags_from_wire(client.tags(d["metadata"]["arn"])),
                        client.extensions(_rid(kind, d)) if kind.name in SUPPORTED else None,
                    )
                    for d in datas
                ]
        except ApiError as exc:
            if exc.code != "NotFoundException":
                raise
            raise _fail(_not_found(client, kind, mesh_name, parent, exc)) from None
    if output is GetOutput.yaml:
        sys.stdout.write(dump_documents(documents))
    elif output is GetOutput.json:
        emit_json({kind.name: items[0]} if name is not None else {kind.plural: items})
    elif items:
        print_table(_table(kind, items))
    else:
        where = "" if kind.name == "mesh" else f" in mesh {mesh}"
        say(f"No {_words(kind, True)}{where}. Create them with `mapmesh apply -f FILE`.")
