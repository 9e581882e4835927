"""Shared pieces of the benchmarks: processes, CPU pinning, the registry seed and results.

The benchmarks run as modules from the repository root (``python -m bench.dns_vs_nsd``).
Every process they start is owned by one :class:`Processes` stack, which stops it on exit,
on error and on Ctrl-C/SIGTERM; children also get ``PR_SET_PDEATHSIG`` so they die with
the benchmark even if it is killed outright.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

__all__ = [
    "RESULTS_DIR",
    "ROOT",
    "CpuGroup",
    "CpuQuota",
    "CpuSample",
    "CpuShares",
    "IdleGroup",
    "Processes",
    "Spawned",
    "child_cpu_seconds",
    "cloudmap_client",
    "compile_sources",
    "core_busy_seconds",
    "free_port",
    "machine_info",
    "median",
    "pin_self",
    "raise_on_sigterm",
    "require_tools",
    "source_info",
    "start_mapmesh",
    "temp_dir",
    "tree_cpu_seconds",
    "wait_for_quiet",
    "wait_operation",
    "write_result",
]

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
_PR_SET_PDEATHSIG = 1
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A loopback port free for TCP and UDP at once (DNS needs both on one number)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def require_tools(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        sys.exit(
            f"missing tools: {', '.join(missing)} "
            "(bash scripts/bench.sh installs them: apt-get install nsd dnsperf wrk)"
        )


def raise_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so ``finally`` blocks stop the children.

    SIGINT gets Python's default handler back too: a shell starting us in the background
    hands it down ignored, and ``kill -INT`` should still clean up.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pin_self(cpu: int) -> None:
    """Keep the orchestrating Python process off the server's core."""
    os.sched_setaffinity(0, {cpu})


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _nice_autogroup(nice: int) -> None:
    """Give the child's session the niceness too. Every child starts its own session, and
    with ``CONFIG_SCHED_AUTOGROUP`` the scheduler first shares a core fairly between
    sessions, so a process's own nice value only ranks it inside its session: a nice-19
    control plane would still take whole time slices from the proxy beside it."""
    with contextlib.suppress(OSError):  # no autogroups on this kernel: nothing to do
        Path("/proc/self/autogroup").write_text(str(nice))


class CpuGroup:
    """A cgroup of the ``cpu`` controller (v1 or v2) for the children a benchmark starts;
    the subclasses say what it limits. Needs root; removed on exit."""

    def __init__(self, name: str) -> None:
        v1, v2 = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")
        if (v1 / "cpu.cfs_quota_us").exists():
            self.path, self._v2 = v1 / name, False
        elif "cpu" in _read(v2 / "cgroup.controllers").split():
            self.path, self._v2 = v2 / name, True
        else:
            raise RuntimeError("no cgroup cpu controller")

    def __enter__(self) -> Self:
        try:
            self.path.mkdir(exist_ok=True)
            self._configure()
        except OSError as exc:
            raise RuntimeError(f"cannot set up the cgroup {self.path}: {exc}") from exc
        return self

    def _configure(self) -> None:
        raise NotImplementedError

    def __exit__(self, *exc_info: object) -> None:
        for _ in range(50):  # the cgroup can be removed once its processes are gone
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)

    def join(self) -> None:
        """Moves the calling process (a child about to exec) into the cgroup."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))


class CpuQuota(CpuGroup):
    """A CFS bandwidth limit: processes spawned into it get ``fraction`` of one core.

    Why: on a 2-core box one load generator core cannot always saturate a fast server on
    the other core; capping the server at, say, half a core makes the server the
    bottleneck again, so queries/s divided by the fraction is its capacity per core.
    """

    def __init__(self, name: str, fraction: float, period_us: int = 100_000) -> None:
        if not 0 < fraction <= 64:
            raise ValueError("fraction must be in (0, 64]")
        super().__init__(name)
        self.fraction = fraction
        self.period_us = period_us

    def _configure(self) -> None:
        quota = int(self.fraction * self.period_us)
        if self._v2:
            (self.path / "cpu.max").write_text(f"{quota} {self.period_us}")
        else:
            (self.path / "cpu.cfs_period_us").write_text(str(self.period_us))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))

    def throttled(self) -> tuple[int, int]:
        """(periods, periods in which the quota ran out) so far."""
        stats = dict(line.split() for line in _read(self.path / "cpu.stat").splitlines())
        return int(stats.get("nr_periods", 0)), int(stats.get("nr_throttled", 0))


class IdleGroup(CpuGroup):
    """Processes that run only when nothing else on their core wants to (``cpu.idle``,
    the cgroup form of ``SCHED_IDLE``): a process that wakes on that core preempts them at
    once. Lower than nice 19, which still earns a share of the core and, once owed it,
    holds the core for a time slice while the process beside it waits."""

    def _configure(self) -> None:
        (self.path / "cpu.idle").write_text("1")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@dataclass
class Spawned:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
            )


class Processes:
    """Owns the long-running children of one benchmark; stops them all on exit."""

    def __init__(self) -> None:
        self._children: list[Spawned] = []

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        cpu: int | None = None,
        cgroup: CpuGroup | None = None,
        nice: int = 0,
    ) -> Spawned:
        command = [*(["taskset", "-c", str(cpu)] if cpu is not None else []), *argv]

        def prepare_child() -> None:
            _die_with_parent()
            if cgroup is not None:
                cgroup.join()
            if nice:
                os.nice(nice)
                _nice_autogroup(nice)

        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us; we stop them in order
                preexec_fn=prepare_child,
            )
        child = Spawned(name, process, log_path)
        self._children.append(child)
        return child

    def stop_all(self, timeout: float = 10.0) -> None:
        for child in reversed(self._children):
            if child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + timeout
        for child in reversed(self._children):
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait(5)
        self._children.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A second Ctrl-C while stopping must not leave children behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.stop_all()
        finally:
            signal.signal(signal.SIGINT, previous)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def start_mapmesh(
    processes: Processes,
    data_dir: Path,
    *,
    cpu: int | None,
    cgroup: CpuGroup | None = None,
    nice: int = 0,
    timeout: float = 30.0,
) -> tuple[Spawned, int, int]:
    """``mapmesh server`` on free ports, pinned whole (every thread) to ``cpu``, in
    ``cgroup`` (a CPU quota, or idle priority) and at scheduling priority ``nice``.

    Returns the process, the API port and the DNS port once ``/healthz`` answers.
    """
    port, dns_port = free_port(), free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable, "-m", "mapmesh", "server",
        "--data-dir", str(data_dir),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--dns-port", str(dns_port),
        "--log-level", "warning",
    ]  # fmt: skip
    log = data_dir.parent / "mapmesh.log"
    server = processes.spawn("mapmesh", argv, log, cpu=cpu, cgroup=cgroup, nice=nice)
    deadline = time.monotonic() + timeout
    while not _http_ok(f"http://127.0.0.1:{port}/healthz"):
        server.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"mapmesh not ready in {timeout:.0f}s:\n{server.log_tail()}")
        time.sleep(0.1)
    return server, port, dns_port


def cloudmap_client(url: str) -> Any:
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    return boto3.client(
        "servicediscovery",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIDBENCH",
        aws_secret_access_key="bench",
        config=Config(inject_host_prefix=False, retries={"max_attempts": 1}),
    )


def wait_operation(sd: Any, operation_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        op: dict[str, Any] = sd.get_operation(OperationId=operation_id)["Operation"]
        if op["Status"] == "SUCCESS":
            return op
        if op["Status"] == "FAIL" or time.monotonic() > deadline:
            raise RuntimeError(f"operation {operation_id} did not succeed: {op}")
        time.sleep(0.02)


def _parent_pid(pid: str) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2 :].split()[1])


def _run_seconds(pid: int) -> float:
    """Time every live thread of ``pid`` has run, from the scheduler (ns, not ticks)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    return total / 1e9


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by ``root``, its threads and live descendants (NSD forks)."""
    parents = {int(e): ppid for e in os.listdir("/proc") if e.isdigit()
               if (ppid := _parent_pid(e)) is not None}  # fmt: skip
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(_run_seconds(pid) for pid in tree)


def core_busy_seconds(cpu: int) -> float:
    """Seconds one core has spent running tasks (not interrupts), whoever they were."""
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields[0] == f"cpu{cpu}":
            user, nice, system, _idle, _iowait, _irq, _softirq, steal = map(int, fields[1:9])
            return (user + nice + system + steal) / _CLOCK_TICKS
    raise ValueError(f"no cpu{cpu} in /proc/stat")


def wait_for_quiet(cores: Sequence[int], max_wait: float, threshold: float = 0.15) -> float:
    """Waits (up to ``max_wait`` s) for a second in which every core is below ``threshold``
    busy, so a measurement does not start under someone else's load; returns the busiest
    core's share in the last second sampled."""
    deadline = time.monotonic() + max_wait
    while True:
        before = [core_busy_seconds(c) for c in cores]
        time.sleep(1.0)
        busiest = max(core_busy_seconds(c) - b for c, b in zip(cores, before, strict=True))
        if busiest < threshold or time.monotonic() >= deadline:
            return busiest


def child_cpu_seconds() -> float:
    """CPU seconds of the children this process has waited for (a finished load generator)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class CpuShares:
    """Fractions of one core used during a measurement.

    ``*_other`` is what anything else used on that core: the noise to watch on a shared box.
    """

    server: float  # by the server's whole process tree (on the server core)
    server_other: float
    client: float  # by the load generator (a child this process has waited for)
    client_other: float


@dataclass(frozen=True)
class CpuSample:
    at: float
    server: float
    client: float
    server_core: float
    client_core: float

    @classmethod
    def take(cls, server_pid: int, server_core: int, client_core: int) -> CpuSample:
        return cls(
            time.monotonic(),
            tree_cpu_seconds(server_pid),
            child_cpu_seconds(),
            core_busy_seconds(server_core),
            core_busy_seconds(client_core),
        )

    def shares_until(self, later: CpuSample) -> CpuShares:
        elapsed = max(later.at - self.at, 1e-9)

        def rate(before: float, after: float) -> float:
            return (after - before) / elapsed

        server = rate(self.server, later.server)
        client = rate(self.client, later.client)
        return CpuShares(
            server=server,
            server_other=max(0.0, rate(self.server_core, later.server_core) - server),
            client=client,
            client_other=max(0.0, rate(self.client_core, later.client_core) - client),
        )


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _tool_version(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return next((line.strip() for line in lines if any(c.isdigit() for c in line)), "unknown")


def source_info() -> dict[str, Any]:
    """Which code was measured: the commit, and a digest of the working tree's ``src/``."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    commit = _tool_version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    return {"commit": commit, "src_sha256": digest.hexdigest()[:16]}


def machine_info(tools: dict[str, Sequence[str]], damon: str) -> dict[str, Any]:
    """Facts about the machine and code measured; ``damon`` is :func:`bench.damon.damon_paused`'s
    note on the kernel's memory scanner."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "tools": {name: _tool_version(argv) for name, argv in tools.items()},
        "source": source_info(),
        "damon": damon,
    }


def compile_sources() -> None:
    """Write mapmesh's bytecode caches, as an installed package has them: a process started
    for a measurement then reads them instead of compiling every module (which would inflate
    its start-up time and memory, and which ``PYTHONDONTWRITEBYTECODE`` makes it do each time)."""
    import compileall

    compileall.compile_dir(ROOT / "src" / "mapmesh", quiet=1)


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return path


@contextlib.contextmanager
def temp_dir(name: str, keep: bool) -> Iterator[Path]:
    """A temporary working directory for one benchmark run; kept (and named) on request."""
    path = Path(tempfile.mkdtemp(prefix=f"mapmesh-bench-{name}-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)
