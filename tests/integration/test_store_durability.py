"""An acknowledged write survives ``kill -9``.

The story: a real writer process runs eight concurrent writers through one SqliteStore (so
writes go through group commit) and prints every acknowledged key and revision. Once a few
hundred acknowledgements are out, the test kills it with SIGKILL mid-stream, reopens the
store and finds every acknowledged key at exactly the acknowledged revision.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from mapmesh.store import SqliteStore

WRITER = """
import asyncio, sys
from mapmesh.store import Put, SqliteStore

async def writer(store, w):
    for i in range(10**9):
        key = f"w{w}/{i:09d}"
        result = await store.txn([], [Put(key, key.encode())])
        print(key, result.revision, flush=True)

async def main(path):
    store = await SqliteStore.open(path)
    await asyncio.gather(*(writer(store, w) for w in range(8)))

asyncio.run(main(sys.argv[1]))
"""

ACKS_BEFORE_KILL = 300


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "mapmesh.db"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(ACKS_BEFORE_KILL)]

    os.kill(process.pid, signal.SIGKILL)
    lines += process.stdout.readlines()  # acknowledged before the kill landed
    process.wait()
    assert process.returncode == -signal.SIGKILL

    acks = [line.split() for line in lines if line.endswith("\n")]
    assert len(acks) >= ACKS_BEFORE_KILL

    store = await SqliteStore.open(path)
    try:
        for key, revision in acks:
            kv = await store.get(key)
            assert kv is not None, f"acknowledged {key} is lost"
            assert (kv.value, kv.mod_revision) == (key.encode(), int(revision))
        assert await store.revision() >= max(int(revision) for _, revision in acks)
    finally:
        await store.close()
