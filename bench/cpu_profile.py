"""Where a process's CPU goes under load, from perf's samples: per component and per symbol.

perf samples a process whenever it is on a CPU, at a fixed rate (the ``cpu-clock`` event, so
it works in virtual machines without hardware counters), and names every kind of frame: the
kernel, the interpreter, the modules mypyc compiled, httptools, uvloop, libc. A Python-level
sampler sees none of the compiled modules' frames, and counts a preempted thread as busy;
perf counts only the time the process ran, so the upstream can share its core.

Each sample stands for ``1 / rate`` seconds of CPU; divided by the requests served meanwhile
that is µs per request, comparable across proxies measured the same way.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["COMPONENTS", "component_of", "finish", "record", "summarize"]

# (component, what the shared object's name starts with), first match wins.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kernel", ("[kernel",)),
    ("compiled modules (mypyc)", ("mapmesh_native__mypyc",)),
    ("C speedups", ("_speedups.cpython",)),
    ("CPython", ("python3",)),
    ("httptools (llhttp)", ("parser.cpython", "url_parser.cpython")),
    ("uvloop (libuv)", ("loop.cpython",)),
    ("libc", ("libc.so", "libm.so", "[vdso]")),
    ("haproxy", ("haproxy",)),
    ("nginx", ("nginx",)),
)

# "  12.34%   1234  python3.11  [.] _PyEval_EvalFrameDefault"
_LINE = re.compile(r"^\s*([\d.]+)%\s+(\d+)\s+(\S+)\s+\[(.)\]\s+(.*?)\s*$")


def component_of(dso: str) -> str:
    for name, prefixes in COMPONENTS:
        if dso.startswith(prefixes):
            return name
    return "other"


def record(pid: int, rate: int, output: Path) -> subprocess.Popen[bytes] | str:
    """Start sampling ``pid`` until :func:`finish`; the running perf, or why it cannot run."""
    if shutil.which("perf") is None:
        return "perf is not installed (apt-get install linux-perf)"
    argv = ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(rate), "-p", str(pid),
            "-o", str(output)]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(perf: subprocess.Popen[bytes], timeout: float = 30.0) -> str | None:
    """Stop ``perf record`` (as Ctrl-C does) and wait for its file; None, or its complaint."""
    if perf.poll() is None:
        perf.send_signal(signal.SIGINT)
    try:
        _, err = perf.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        perf.kill()
        perf.wait(5)
        return "perf record did not finish"
    if perf.returncode not in (0, -signal.SIGINT):
        return f"perf record failed: {err.decode(errors='replace').strip()[-500:]}"
    return None


def summarize(data: Path, requests: float, rate: int, top: int = 25) -> dict[str, Any]:
    """µs per request per component and for the busiest symbols (self time)."""
    done = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--no-children", "-q", "-n",
         "--sort", "dso,sym", "--percent-limit", "0"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        return {"skipped": f"perf report failed: {done.stderr.strip()[-500:]}"}
    symbols: list[tuple[int, str, str]] = []
    for line in done.stdout.splitlines():
        match = _LINE.match(line)
        if match:
            symbols.append((int(match.group(2)), match.group(3), match.group(5)))
    total = sum(count for count, _, _ in symbols)
    if not total or not requests:
        return {"skipped": "perf recorded no samples"}
    per_request = 1e6 / rate / requests  # µs of CPU per sample, per request

    components: dict[str, int] = {}
    for count, dso, _ in symbols:
        name = component_of(dso)
        components[name] = components.get(name, 0) + count
    symbols.sort(reverse=True)
    return {
        "samples": total,
        "sampled_us_per_request": round(total * per_request, 2),
        "components": {
            name: {
                "us_per_request": round(count * per_request, 2),
                "share": round(count / total, 4),
            }
            for name, count in sorted(components.items(), key=lambda kv: -kv[1])
        },
        "top": [
            {
                "symbol": symbol,
                "dso": dso,
                "us_per_request": round(count * per_request, 3),
                "share": round(count / total, 4),
            }
            for count, dso, symbol in symbols[:top]
        ],
    }
