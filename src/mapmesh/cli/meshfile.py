"""Mesh files: App Mesh resources as multi-document YAML, parsed and planned without I/O.

A mesh file holds one resource per YAML document, in the App Mesh API's own shapes::

    kind: Route                # Mesh | VirtualNode | VirtualService | VirtualRouter | Route
    mesh: demo                 #   | VirtualGateway | GatewayRoute   (no ``mesh`` for a Mesh)
    virtualRouter: worker      # Route only; ``virtualGateway`` for a GatewayRoute
    name: worker-route
    spec: {...}                # the <Kind>Spec of the API, camelCase
    tags: {team: core}         # optional; when present, the resource's complete tag set

mapmesh extensions (:mod:`mapmesh.mesh.extensions`) are written inside the spec, where they
apply — ``rateLimit`` on a GatewayRoute's spec and on a VirtualNode's listeners — and split
off when the file is parsed (:func:`split_extensions`): the App Mesh API gets the spec
without them, the native ``/v1/extensions`` endpoint gets them. :func:`merge_extensions`
puts them back for diffs and ``get -o yaml``.

Theory of operation (``mapmesh apply|diff|delete`` drive it; this module decides, they call):

1. *Parse* (:func:`parse`): each document becomes a :class:`Document` or a
   :class:`MeshFileError` that names the file, the line and what to write instead. The spec,
   names and tags are checked against the same botocore model the control plane validates
   requests with, so most mistakes are caught before anything is sent. Every YAML node's line
   is kept, so a refusal from the server that names a field (``spec.listeners[0]...``) can be
   pointed back at its line (:meth:`Document.line_of`).
2. *Order* (:func:`apply_order`, :func:`delete_order`): App Mesh refuses a write whose
   references do not exist yet and a delete of a resource still referenced, so resources are
   applied in :data:`APPLY_ORDER` — a route needs its router and target nodes, a virtual
   service its provider node or router, a gateway route its gateway and target service —
   and deleted in the reverse order. (A node's ``backends`` are not checked by App Mesh, so a
   node may name a virtual service that comes later.)
3. *Plan* (:func:`plan`): desired document + what the server returned → a :class:`Change`
   (``created`` / ``configured`` / ``unchanged``). Specs are compared after
   :func:`normalized_spec` removes empty members and fills in the defaults the server writes
   into stored specs (:data:`SERVER_DEFAULTS`), so applying a file twice changes nothing.
4. *Render*: :meth:`Change.diff` (a unified diff of the specs' YAML) and
   :func:`document_from_data` / :func:`dump_documents` (``get -o yaml``, which applies back).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml
from pydantic import ValidationError

from mapmesh.api.spec import ValidationFailed, load_spec
from mapmesh.mesh.extensions import SUPPORTED, Extensions, RateLimit, describe_error
from mapmesh.mesh.kinds import KINDS, KINDS_BY_TITLE, Kind, ResourceId

__all__ = [
    "APPLY_ORDER",
    "SERVER_DEFAULTS",
    "Action",
    "Change",
    "Document",
    "MeshFileError",
    "Source",
    "apply_order",
    "check_unique",
    "delete_order",
    "document_from_data",
    "dump_documents",
    "field_path",
    "label",
    "merge_extensions",
    "normalized_spec",
    "parse",
    "plan",
    "split_extensions",
    "tags_from_wire",
    "tags_to_wire",
]

APPLY_ORDER: tuple[str, ...] = (
    "mesh",
    "virtualNode",
    "virtualRouter",
    "route",
    "virtualService",
    "virtualGateway",
    "gatewayRoute",
)

# Members the control plane writes into a stored spec when the request leaves them out:
# (kind, path of the member, value). Everything else it applies later, at compile time.
SERVER_DEFAULTS: tuple[tuple[str, tuple[str, ...], Any], ...] = (
    ("mesh", ("egressFilter",), {"type": "DROP_ALL"}),
)

_SPEC = "appmesh-2019-01-25"
_COMMON_KEYS = ("kind", "mesh", "name", "spec", "tags")
_FIELD_PATH = re.compile(r"\b(spec(?:\.[A-Za-z0-9_]+|\[\d+\])*)")
_LAST_STEP = re.compile(r"(\.[^.\[]+|\[\d+\])$")


# -- documents ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """Where a document came from: file name, 1-based document number, line of its start."""

    file: str
    index: int
    line: int

    def at(self, line: int | None = None) -> str:
        return f"{self.file}:{line or self.line}"

    def __str__(self) -> str:
        return f"{self.at()} (document {self.index})"


class MeshFileError(Exception):
    """A document that cannot be applied as written; the message says what to change."""

    def __init__(self, source: Source, message: str, line: int | None = None) -> None:
        self.source = source
        self.message = message
        self.line = line or source.line
        super().__init__(f"{source.at(self.line)} (document {source.index}): {message}")


@dataclass(frozen=True, eq=False, slots=True)
class Document:
    """One resource as the file wants it."""

    id: ResourceId
    spec: dict[str, Any]
    tags: dict[str, str] | None  # None: the file leaves the resource's tags alone
    source: Source
    lines: Mapping[str, int] = field(default_factory=dict, repr=False)
    # mapmesh extensions, canonical wire form ({} when the file sets none)
    extensions: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> Kind:
        return KINDS[self.id.kind]

    @property
    def label(self) -> str:
        return label(self.id)

    def line_of(self, path: str | None) -> int:
        """The line of ``path`` (``spec.listeners[0].port``), or of its closest parent."""
        while path:
            if path in self.lines:
                return self.lines[path]
            parent = _LAST_STEP.sub("", path)
            if parent == path:
                break
            path = parent
        return self.source.line


def label(rid: ResourceId) -> str:
    """``VirtualNode demo/worker-v1``, ``Route demo/worker/split``, ``Mesh demo``."""
    title = KINDS[rid.kind].title
    if rid.kind == "mesh":
        return f"{title} {rid.mesh}"
    scope = f"{rid.parent}/" if rid.parent else ""
    return f"{title} {rid.mesh}/{scope}{rid.name}"


def field_path(message: str) -> str | None:
    """The first ``spec.…`` field path a (server) message names, if any."""
    found = _FIELD_PATH.search(message)
    return found.group(1) if found else None


# -- parsing ------------------------------------------------------------------------------


def parse(text: str, file: str) -> list[Document]:
    """Every resource document of ``text`` (empty documents are skipped)."""
    documents: list[Document] = []
    loader = yaml.SafeLoader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            index += 1
            if node is None:
                continue
            source = Source(file, index, node.start_mark.line + 1)
            lines: dict[str, int] = {}
            _index_lines(node, "", lines, source)
            value = loader.construct_document(node)
            if value is None:
                continue
            documents.append(_document(value, source, lines))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise MeshFileError(
            Source(file, index or 1, line), f"not valid YAML: {exc.problem or exc.context}"
        ) from None
    except yaml.YAMLError as exc:
        raise MeshFileError(Source(file, index or 1, 1), f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    return documents


def _index_lines(node: yaml.Node, path: str, lines: dict[str, int], source: Source) -> None:
    """Record the 1-based line of every member (``spec.listeners[0].portMapping``)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            member = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if key in seen:
                raise MeshFileError(
                    source, f"{member}: appears twice in the same mapping; keep one", line
                )
            seen.add(key)
            lines[member] = line
            _index_lines(value_node, member, lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            member = f"{path}[{i}]"
            lines[member] = item.start_mark.line + 1
            _index_lines(item, member, lines, source)


@dataclass(frozen=True, slots=True)
class _Where:
    """The document being parsed, to build errors that point at a member's line."""

    source: Source
    lines: Mapping[str, int]

    def __call__(self, message: str, path: str | None = None) -> MeshFileError:
        return MeshFileError(self.source, message, self.lines.get(path or ""))


def _document(value: object, source: Source, lines: dict[str, int]) -> Document:
    fail = _Where(source, lines)
    if not isinstance(value, dict):
        raise fail(
            f"a document must be a mapping with kind, name and spec; this one is a "
            f"{_yaml_type(value)}"
        )
    kind = _kind(value.get("kind"), fail)
    allowed = (*_COMMON_KEYS, *([kind.parent] if kind.parent else []))
    for key in value:
        if key not in allowed:
            hint = _did_you_mean(str(key), allowed)
            raise fail(f"{key}: not a member of a {kind.title} document{hint}", str(key))
    name = _string(value, "name", fail)
    if kind.name == "mesh":
        mesh = value.get("mesh", name)
        if mesh != name:
            raise fail("mesh: a Mesh document names its mesh with `name`; drop `mesh`", "mesh")
        parent = None
    else:
        mesh = _string(value, "mesh", fail)
        parent = _string(value, kind.parent, fail) if kind.parent else None
    spec = value.get("spec")
    if spec is None and kind.name == "mesh":
        spec = {}  # CreateMesh's spec is optional
    if spec is None:
        raise fail(f"spec: missing; a {kind.title} needs its App Mesh {kind.title}Spec")
    if not isinstance(spec, dict):
        raise fail(f"spec: must be a mapping, not a {_yaml_type(spec)}", "spec")
    tags = _tags(value.get("tags"), fail)
    written = spec
    spec, extensions = split_extensions(kind.name, written)
    rid = ResourceId(kind.name, mesh, parent, name)
    _check_against_model(Document(rid, spec, tags, source, lines))
    extensions = _checked_extensions(kind, written, extensions, fail)
    return Document(rid, spec, tags, source, lines, extensions)


def split_extensions(kind: str, spec: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the App Mesh spec, the extensions' wire form) of a spec as written in a mesh file."""
    spec = dict(spec)
    extensions: dict[str, Any] = {}
    if "rateLimit" in SUPPORTED.get(kind, ()) and "rateLimit" in spec:
        extensions["rateLimit"] = spec.pop("rateLimit")
    listeners = spec.get("listeners")
    if "listeners" in SUPPORTED.get(kind, ()) and isinstance(listeners, list):
        limited: list[dict[str, Any]] = []
        plain: list[Any] = []
        for listener in listeners:
            if isinstance(listener, dict) and "rateLimit" in listener:
                listener = dict(listener)
                mapping = listener.get("portMapping")
                port = mapping.get("port") if isinstance(mapping, dict) else None
                limited.append({"port": port, "rateLimit": listener.pop("rateLimit")})
            plain.append(listener)
        spec["listeners"] = plain
        if limited:
            extensions["listeners"] = limited
    return spec, extensions


def merge_extensions(
    kind: str, spec: Mapping[str, Any], extensions: Mapping[str, Any]
) -> dict[str, Any]:
    """The spec as a mesh file writes it: ``spec`` with ``extensions`` put back in place."""
    merged = dict(spec)
    if "rateLimit" in SUPPORTED.get(kind, ()) and extensions.get("rateLimit"):
        merged["rateLimit"] = extensions["rateLimit"]
    by_port = {
        entry.get("port"): entry["rateLimit"]
        for entry in extensions.get("listeners") or ()
        if entry.get("rateLimit")
    }
    written = spec.get("listeners")
    if "listeners" in SUPPORTED.get(kind, ()) and by_port and isinstance(written, list):
        listeners = []
        for listener in written:
            mapping = listener.get("portMapping") if isinstance(listener, dict) else None
            port = mapping.get("port") if isinstance(mapping, dict) else None
            if port in by_port:
                listener = {**listener, "rateLimit": by_port[port]}
            listeners.append(listener)
        merged["listeners"] = listeners
    return merged


def _checked_extensions(
    kind: Kind, written: Mapping[str, Any], extensions: dict[str, Any], fail: _Where
) -> dict[str, Any]:
    """The extensions' canonical wire form; errors point at the ``rateLimit`` as written."""
    blocks: list[tuple[str, Any]] = []
    if "rateLimit" in extensions:
        blocks.append(("spec.rateLimit", extensions["rateLimit"]))
    if "listeners" in extensions:
        for i, listener in enumerate(written.get("listeners") or ()):
            if isinstance(listener, dict) and "rateLimit" in listener:
                blocks.append((f"spec.listeners[{i}].rateLimit", listener["rateLimit"]))
    for path, block in blocks:
        try:
            RateLimit.model_validate(block)
        except ValidationError as exc:
            raise fail(f"{describe_error(exc, path)} (a mapmesh extension)", path) from None
    try:
        return Extensions.from_wire(extensions).wire()
    except ValidationError as exc:
        raise fail(describe_error(exc, f"{kind.title} extensions")) from None


def _kind(value: object, fail: _Where) -> Kind:
    titles = ", ".join(KINDS_BY_TITLE)
    if value is None:
        raise fail(f"kind: missing; one of {titles}")
    if not isinstance(value, str) or value not in KINDS_BY_TITLE:
        hint = _did_you_mean(str(value), tuple(KINDS_BY_TITLE))
        raise fail(f"kind: unknown kind {value!r}{hint}; one of {titles}", "kind")
    return KINDS_BY_TITLE[value]


def _string(value: dict[str, Any], key: str, fail: _Where) -> str:
    item = value.get(key)
    if item is None:
        what = {"name": "the resource's name", "mesh": "the mesh it belongs to"}
        owner = what.get(key, f"the {_words(key)} it belongs to")
        raise fail(f"{key}: missing; add `{key}: NAME`, {owner}")
    if not isinstance(item, str) or not item:
        raise fail(f'{key}: must be a non-empty string; quote it: {key}: "{item}"', key)
    return item


def _tags(value: object, fail: _Where) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise fail(f"tags: must be a mapping of key: value, not a {_yaml_type(value)}", "tags")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise fail(
                f'tags.{key}: tag keys and values must be strings; quote it: "{key}": "{item}"',
                f"tags.{key}",
            )
    return dict(value)


def _check_against_model(document: Document) -> None:
    """Validate as the control plane will: the Create<Kind> request of this document."""
    spec = load_spec(_SPEC)
    kind = document.kind
    operation = spec.operations[f"Create{kind.title}"]
    params: dict[str, Any] = {"meshName": document.id.mesh, "spec": document.spec}
    if kind.name != "mesh":
        params[kind.name_field] = document.id.name
    if kind.parent_field is not None:
        params[kind.parent_field] = document.id.parent
    if document.tags is not None:
        params["tags"] = tags_to_wire(document.tags)
    try:
        spec.validate_input(operation, params)
    except ValidationFailed as exc:
        text = re.sub(r"^\d+ validation errors? detected: ", "", str(exc))
        # The request's top-level members are the document's keys under other names.
        renames = {"meshName": "name" if kind.name == "mesh" else "mesh"}
        if kind.name != "mesh":
            renames[kind.name_field] = "name"
        if kind.parent and kind.parent_field:
            renames[kind.parent_field] = kind.parent
        for member, key in renames.items():
            text = re.sub(rf"(^|: |; ){member}(?=:)", rf"\g<1>{key}", text)
        path = field_path(text)
        if path is not None:
            text += f" (see {kind.title}Spec in the App Mesh API reference)"
        if "rateLimit" in text:
            text += (
                "; rateLimit, a mapmesh extension, goes on a GatewayRoute's spec or a "
                "VirtualNode's listeners"
            )
        line = document.line_of(path or text.split(":", 1)[0])
        raise MeshFileError(document.source, text, line) from None


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _words(member: str) -> str:
    """``virtualRouter`` → ``virtual router``."""
    return re.sub(r"(?<!^)([A-Z])", lambda m: " " + m.group(1).lower(), member)


def _yaml_type(value: object) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return "string" if isinstance(value, str) else type(value).__name__


def check_unique(documents: Iterable[Document]) -> None:
    """Refuse two documents for the same resource (which one should win is unclear)."""
    seen: dict[ResourceId, Document] = {}
    for document in documents:
        first = seen.setdefault(document.id, document)
        if first is not document:
            raise MeshFileError(
                document.source,
                f"{document.label} is already defined at {first.source}; keep one of them",
            )


# -- ordering -----------------------------------------------------------------------------


def apply_order(documents: Iterable[Document]) -> list[Document]:
    """Dependencies first (:data:`APPLY_ORDER`); file order within a kind."""
    return sorted(documents, key=lambda d: APPLY_ORDER.index(d.id.kind))


def delete_order(documents: Iterable[Document]) -> list[Document]:
    """Users before what they use: the exact reverse of :func:`apply_order`."""
    return apply_order(documents)[::-1]


# -- planning -----------------------------------------------------------------------------


class Action(StrEnum):
    CREATE = "created"
    UPDATE = "configured"
    UNCHANGED = "unchanged"


def _prune(value: Any) -> Any:
    """Drop null members and empty lists/mappings: the API treats them as absent."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [_prune(item) for item in value]
    return value


def normalized_spec(kind: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` as the control plane stores it: pruned, with :data:`SERVER_DEFAULTS` added."""
    result: dict[str, Any] = _prune(dict(spec))
    for default_kind, path, value in SERVER_DEFAULTS:
        if default_kind != kind:
            continue
        parent = result
        for key in path[:-1]:
            parent = parent.setdefault(key, {})
        parent.setdefault(path[-1], value)
    return result


@dataclass(frozen=True, eq=False, slots=True)
class Change:
    """What apply does to one resource, and the specs it compared to decide."""

    document: Document
    action: Action
    desired: dict[str, Any]
    live: dict[str, Any] | None  # None: the resource does not exist
    spec_changed: bool
    tags_to_set: dict[str, str]
    tags_to_remove: tuple[str, ...]
    live_tags: dict[str, str] | None = None
    extensions_changed: bool = False
    live_extensions: dict[str, Any] = field(default_factory=dict)

    def diff(self) -> str:
        """A unified diff from the live resource to the file's (empty when unchanged);
        extensions are shown inside the specs, where the file writes them."""
        if self.action is Action.UNCHANGED:
            return ""
        document = self.document
        kind = document.id.kind
        after: dict[str, Any] = {"spec": merge_extensions(kind, self.desired, document.extensions)}
        before: dict[str, Any] | None = None
        if self.live is not None:
            before = {"spec": merge_extensions(kind, self.live, self.live_extensions)}
        if document.tags is not None:
            after["tags"] = document.tags
            if before is not None:
                before["tags"] = self.live_tags or {}
        lines = difflib.unified_diff(
            _yaml_lines(before),
            _yaml_lines(after),
            fromfile=f"live  {document.label}" + (" (does not exist)" if before is None else ""),
            tofile=f"file  {document.label} ({document.source.at()})",
            lineterm="",
        )
        return "\n".join(lines) + "\n"


def _yaml_lines(value: dict[str, Any] | None) -> list[str]:
    if value is None:
        return []
    return yaml.safe_dump(value, sort_keys=True, default_flow_style=False).splitlines()


def plan(
    document: Document,
    live_spec: Mapping[str, Any] | None,
    live_tags: Mapping[str, str] | None = None,
    live_extensions: Mapping[str, Any] | None = None,
) -> Change:
    """Compare the file's resource with the server's (``live_spec`` None: it is missing).

    The file's extensions are the complete set, like its spec: one the file leaves out is
    removed."""
    kind = document.id.kind
    desired = normalized_spec(kind, document.spec)
    if live_spec is None:
        extended = bool(document.extensions)
        return Change(document, Action.CREATE, desired, None, True, {}, (), None, extended)
    live = normalized_spec(kind, live_spec)
    spec_changed = desired != live
    to_set: dict[str, str] = {}
    to_remove: tuple[str, ...] = ()
    current = dict(live_tags or {})
    if document.tags is not None:
        to_set = {k: v for k, v in document.tags.items() if current.get(k) != v}
        to_remove = tuple(sorted(k for k in current if k not in document.tags))
    live_ext = Extensions.from_wire(live_extensions).wire() if live_extensions else {}
    extensions_changed = document.extensions != live_ext
    changed = spec_changed or bool(to_set) or bool(to_remove) or extensions_changed
    action = Action.UPDATE if changed else Action.UNCHANGED
    return Change(
        document,
        action,
        desired,
        live,
        spec_changed,
        to_set,
        to_remove,
        current,
        extensions_changed,
        live_ext,
    )


# -- rendering back to files --------------------------------------------------------------


def tags_to_wire(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in tags.items()]


def tags_from_wire(tags: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    return {str(t["key"]): str(t.get("value", "")) for t in tags}


def document_from_data(
    kind: Kind,
    data: Mapping[str, Any],
    tags: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A mesh-file document from a ``<Kind>Data`` answer (``DescribeVirtualNode``'s), with
    the resource's extensions written into its spec."""
    document: dict[str, Any] = {"kind": kind.title}
    if kind.name != "mesh":
        document["mesh"] = data["meshName"]
    if kind.parent is not None and kind.parent_field is not None:
        document[kind.parent] = data[kind.parent_field]
    document["name"] = data[kind.name_field]
    document["spec"] = merge_extensions(kind.name, data.get("spec") or {}, extensions or {})
    if tags:
        document["tags"] = dict(tags)
    return document


def dump_documents(documents: Iterable[Mapping[str, Any]]) -> str:
    """Multi-document YAML in the mesh-file format (what ``apply -f`` reads)."""
    return yaml.safe_dump_all(
        [dict(d) for d in documents],
        sort_keys=False,
        default_flow_style=False,
        explicit_start=True,
    )
