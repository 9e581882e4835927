"""The benchmarks pause the kernel's DAMON scanner and always turn it back on."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.damon import damon_paused


def sysfs(tmp_path: Path, *states: str) -> Path:
    """A kdamonds directory as the kernel lays it out: one numbered directory per kdamond."""
    root = tmp_path / "kdamonds"
    for index, state in enumerate(states):
        (root / str(index)).mkdir(parents=True)
        (root / str(index) / "state").write_text(state + "\n")
    root.mkdir(parents=True, exist_ok=True)
    (root / "nr_kdamonds").write_text(f"{len(states)}\n")
    return root


def states(root: Path) -> list[str]:
    return [(d / "state").read_text().strip() for d in sorted(root.glob("[0-9]*"))]


def test_running_kdamonds_are_off_inside_and_on_after(tmp_path: Path) -> None:
    root = sysfs(tmp_path, "on", "off", "on")
    with damon_paused(keep=False, root=root) as note:
        assert states(root) == ["off", "off", "off"]
        assert note == "paused (2 kdamond)"
    assert states(root) == ["on", "off", "on"]  # the one that was off stays off


def test_they_are_turned_back_on_when_the_benchmark_fails(tmp_path: Path) -> None:
    root = sysfs(tmp_path, "on")
    with pytest.raises(KeyboardInterrupt), damon_paused(keep=False, root=root):
        raise KeyboardInterrupt
    assert states(root) == ["on"]


def test_keep_leaves_them_running(tmp_path: Path) -> None:
    root = sysfs(tmp_path, "on")
    with damon_paused(keep=True, root=root) as note:
        assert states(root) == ["on"]
    assert note == "kept on (1 kdamond)"


@pytest.mark.parametrize("layout", ["missing", "all off"])
def test_nothing_to_pause(tmp_path: Path, layout: str) -> None:
    root = sysfs(tmp_path, "off") if layout == "all off" else tmp_path / "absent"
    with damon_paused(keep=False, root=root) as note:
        pass
    assert note == "not running"
