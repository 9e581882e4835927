"""Pausing the kernel's DAMON memory scanner while a benchmark measures.

Some VMs run DAMON (``/sys/kernel/mm/damon``) for proactive reclaim of the guest's page
cache; Firecracker guests like the one these benchmarks were written on do. Its kernel
thread, ``kdamond``, samples page access every 500 ms at about 1 ms a time, and at the end
of every aggregation interval (5 s there) spends 35 to 80 ms of one core merging its regions
and applying its scheme. When that lands on the core a proxy is pinned to, every request in
flight waits, and at 10,000 req/s those 300 to 500 late requests are most of the 1% a p99 is
made of: each target's p99 then measures where the stall happened to fall and how fast the
target drained the backlog after it, and moved between 0.1 and 1.3 ms from round to round.

So each benchmark turns every running kdamond off for the measurement and back on after it
(the scheme's settings stay in sysfs, so "on" restarts it as it was), and records what it did
in the results. ``--keep-damon`` measures the machine as it ships instead.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

KDAMONDS = Path("/sys/kernel/mm/damon/admin/kdamonds")


def _running(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = []
    for kdamond in sorted(p for p in root.iterdir() if p.name.isdigit()):
        with contextlib.suppress(OSError):
            if (kdamond / "state").read_text().strip() == "on":
                found.append(kdamond)
    return found


@contextlib.contextmanager
def damon_paused(keep: bool, root: Path = KDAMONDS) -> Iterator[str]:
    """Every running kdamond is off inside the block (unless ``keep``) and on again after it,
    whatever ends the block; yields a note on what was done, for the results."""
    running = _running(root)
    if not running:
        yield "not running"
        return
    if keep:
        yield f"kept on ({len(running)} kdamond)"
        return
    paused: list[Path] = []
    refused: list[str] = []
    for kdamond in running:
        try:
            (kdamond / "state").write_text("off")
        except OSError as exc:
            refused.append(f"{kdamond.name}: {exc.strerror}")
        else:
            paused.append(kdamond)
    if refused:
        print(
            f"note: could not pause DAMON ({'; '.join(refused)}): its scans stay in the "
            "measurements; run as root to pause it",
            file=sys.stderr,
        )
    try:
        yield f"paused ({len(paused)} kdamond)" + (f", {len(refused)} left on" if refused else "")
    finally:
        for kdamond in paused:
            try:
                (kdamond / "state").write_text("on")
            except OSError as exc:
                print(
                    f"warning: could not restart DAMON ({exc}); restart it with "
                    f"`echo on > {kdamond / 'state'}`",
                    file=sys.stderr,
                )


def add_flag(parser: argparse.ArgumentParser) -> None:
    """The ``--keep-damon`` flag every benchmark takes."""
    parser.add_argument(
        "--keep-damon",
        action="store_true",
        help="leave the kernel's DAMON scanner running (by default it is paused while the "
        "benchmark runs: its scans stall a core for 35-80 ms every few seconds)",
    )
