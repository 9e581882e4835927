"""Access-log formats as App Mesh configures them: Envoy's default line, text patterns and JSON
with Envoy command operators, compiled once; and which file the log goes to."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mapmesh.model import snapshot
from mapmesh.proxy.accesslog import MAPMESH_JSON, AccessLogger, compile_format
from mapmesh.proxy.protocol.events import RequestHead, ResponseHead
from mapmesh.proxy.protocol.http1_server import Http1ServerCodec
from mapmesh.proxy.telemetry.spans import WALL_OFFSET
from mapmesh.proxy.telemetry.tracing import Trace

START = 1_764_000_000.123456 - WALL_OFFSET  # monotonic reading of 2025-11-24T16:00:00.123Z
TRACE = "0af7651916cd43dd8448eb211c80319c"


def request(*fields: str, target: str = "/work?x=1") -> RequestHead:
    codec = Http1ServerCodec()
    lines = "".join(f"{field}\r\n" for field in fields)
    codec.receive_data(f"POST {target} HTTP/1.1\r\nHost: worker.corp\r\n{lines}\r\n".encode())
    head = codec.next_event()
    assert isinstance(head, RequestHead)
    return head


def response(*fields: str) -> ResponseHead:
    raw = "".join(f"{field}\r\n" for field in fields).encode()
    return ResponseHead(200, b"OK", "1.1", None, raw, raw, True, 2, False)


def exchange(head: RequestHead | None = None, **overrides: Any) -> Any:
    transport = SimpleNamespace(
        get_extra_info=lambda name, default=None: {
            "peername": ("10.1.2.3", 50000), "sockname": ("127.0.0.1", 15001)}.get(name)
    )  # fmt: skip
    values: dict[str, Any] = {
        "head": head or request("User-Agent: t/1", "Content-Length: 0"),
        "status": 200, "flags": [], "upstream": "10.0.0.7:8080", "route_name": "split",
        "bytes_received": 5, "bytes_sent": 41, "request_id": b"r-1",
        "added_fields": b"traceparent: 00-%s-b7ad6b7169203331-01\r\n" % TRACE.encode(),
        "trace": None, "response": response("Server: app", "X-Cache: hit"),
        "forwarding": SimpleNamespace(cluster=SimpleNamespace(name="demo/worker:8080"),
                                      attempts=2),
        "started_mono": START,
        "connection": SimpleNamespace(transport=transport, listener="outbound"),
    }  # fmt: skip
    values.update(overrides)
    return SimpleNamespace(**values)


END = START + 0.0421


def test_the_default_format_is_envoys_line_with_the_trace_id() -> None:
    line = compile_format(snapshot.AccessLog(path="/dev/stdout", format="default")).line(
        exchange(), END
    )
    assert line == (
        '[2025-11-24T16:00:00.123Z] "POST /work?x=1 HTTP/1.1" 200 - 5 41 42 - "-" "t/1" "r-1" '
        f'"worker.corp" "10.0.0.7:8080" "{TRACE}"\n'
    )


def test_text_patterns() -> None:
    pattern = (
        "%REQ(:METHOD)% %REQ(X-MISSING?USER-AGENT)% %REQ(:PATH):5% %RESP(X-CACHE)% "
        "%RESP(X-NONE)% %RESPONSE_FLAGS% %UPSTREAM_CLUSTER% %UPSTREAM_REQUEST_ATTEMPT_COUNT% "
        "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% 100% done "
        "%RESPONSE_DURATION% %ROUTE_NAME% %RESPONSE_CODE_DETAILS%"
    )
    form = compile_format(snapshot.AccessLog(path="-", format="text", text=pattern))
    flagged = exchange(flags=["UF", "URX"], status=503, response=None)
    assert form.line(flagged, END) == (
        "POST t/1 /work - - UF,URX demo/worker:8080 2 10.1.2.3:50000 10.1.2.3 100% done - "
        "split local_reply\n"
    )
    assert form.line(exchange(), END).split(" ")[3] == "hit"


def test_json_keeps_the_types_of_single_operators() -> None:
    fields = (
        ("status", "%RESPONSE_CODE%"), ("duration", "%DURATION%"), ("sent", "%BYTES_SENT%"),
        ("upstream", "%UPSTREAM_HOST%"), ("missing", "%RESP(X-NONE)%"),
        ("line", "%REQ(:METHOD)% %RESPONSE_CODE%"), ("flags", "%RESPONSE_FLAGS%"),
        ("start", "%START_TIME(%Y/%m/%d %H:%M:%S.%3f %s)%"), ("trace", "%TRACE_ID%"),
    )  # fmt: skip
    form = compile_format(snapshot.AccessLog(path="-", format="json", json_fields=fields))
    line = form.line(exchange(), END)
    assert line.endswith("\n")
    assert json.loads(line) == {
        "status": 200, "duration": 42, "sent": 41, "upstream": "10.0.0.7:8080",
        "missing": None, "line": "POST 200", "flags": "-",
        "start": "2025/11/24 16:00:00.123 1764000000", "trace": TRACE,
    }  # fmt: skip


def test_the_trace_id_is_known_whether_sampled_or_not() -> None:
    form = compile_format(snapshot.AccessLog(path="-", format="text", text="%TRACE_ID%"))
    sampled = Trace(b"c" * 32, b"1" * 16, None, b"2" * 16)
    assert form.line(exchange(trace=sampled), END) == "c" * 32 + "\n"
    continued = request(f"traceparent: 00-{'d' * 32}-b7ad6b7169203331-00")
    assert form.line(exchange(continued, added_fields=b""), END) == "d" * 32 + "\n"


@pytest.mark.parametrize(
    ("configured", "message"),
    [
        (snapshot.AccessLog(path="-", format="text", text="%NOPE%"),
         "access_log.text: unknown command operator %NOPE%"),
        (snapshot.AccessLog(path="-", format="json", json_fields=(("a", "x %FOO(y)% z"),)),
         "access_log.json: unknown command operator %FOO%"),
        (snapshot.AccessLog(path="-", format="text", text="%REQ()%"),
         "access_log.text: %REQ(...)% needs a header name"),
        (snapshot.AccessLog(path="-", format="json"), "access_log.json: needs at least one key"),
    ],
)  # fmt: skip
def test_a_format_the_proxy_cannot_honour_is_refused(
    configured: snapshot.AccessLog, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        compile_format(configured)


def test_the_flag_writes_mapmeshs_json_line(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    logger = AccessLogger(str(path))
    assert logger.enabled
    logger.record(exchange(), END)
    logger.close()
    entry = json.loads(path.read_text())
    assert list(entry) == [key for key, _ in MAPMESH_JSON]
    assert (entry["listener"], entry["response_code"], entry["duration_ms"]) == (
        "outbound", 200, 42.1)  # fmt: skip
    assert (entry["trace_id"], entry["request_id"], entry["authority"]) == (
        TRACE, "r-1", "worker.corp")  # fmt: skip


def test_the_snapshots_log_wins_and_is_reopened_only_when_its_path_changes(
    tmp_path: Path,
) -> None:
    flag, mesh = tmp_path / "flag.log", tmp_path / "mesh.log"
    logger = AccessLogger(str(flag))
    configured = snapshot.AccessLog(path=str(mesh), format="text", text="%RESPONSE_CODE%")
    logger.commit(logger.prepare(configured))
    logger.record(exchange(), END)
    same = logger.prepare(replace(configured, text="again %RESPONSE_CODE%"))
    logger.commit(same)
    logger.record(exchange(), END)
    logger.commit(logger.prepare(None))  # the snapshot dropped its log: back to the flag
    logger.record(exchange(), END)
    logger.close()
    assert mesh.read_text() == "200\nagain 200\n"
    assert json.loads(flag.read_text())["response_code"] == 200

    unopenable = snapshot.AccessLog(path=str(tmp_path / "missing" / "x.log"), format="default")
    with pytest.raises(ValueError, match=r"access_log\.path: cannot open"):
        AccessLogger(None).prepare(unopenable)
    nothing = AccessLogger(None)
    nothing.commit(nothing.prepare(None))
    assert not nothing.enabled


def test_stdout_is_written_line_by_line(capsys: pytest.CaptureFixture[str]) -> None:
    logger = AccessLogger(None)
    logger.commit(
        logger.prepare(snapshot.AccessLog(path="/dev/stdout", format="text", text="%PROTOCOL%"))
    )
    logger.record(exchange(), END)
    logger.close()
    assert capsys.readouterr().out == "HTTP/1.1\n"
