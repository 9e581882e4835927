"""Cloud Map operations: durable records of asynchronous registry changes.

Theory of operation
-------------------
Namespace creation/update/deletion, service updates and instance (de)registration are
*operations* in Cloud Map: the call returns an OperationId at once and the change happens
afterwards, visible through GetOperation as SUBMITTED → PENDING → SUCCESS or FAIL.

mapmesh keeps that contract literally. ``submit`` stores the operation as SUBMITTED (durable:
the request it carries is in the record), then a task marks it PENDING and runs its applier;
the applier's store transaction writes the change *and* the SUCCESS status atomically, so an
operation never says SUCCESS for a change that is not there. A refused change is stored as
FAIL with the error code and message. On start, operations left SUBMITTED or PENDING by a
crash are run again; appliers are idempotent for that reason.

Callers usually wait briefly for the outcome (``wait``) so that a client which registers and
then discovers sees its own write, while the states stay observable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from mapmesh.model.registry import Operation, OperationStatus, OperationType
from mapmesh.registry import keys
from mapmesh.registry.errors import RegistryError
from mapmesh.registry.ids import new_operation_id
from mapmesh.store import Compare, Delete, Put, Store

__all__ = ["Applier", "OperationRunner"]

log = logging.getLogger(__name__)

# An applier carries out one operation type. It receives the operation in PENDING state and
# returns the revision of the transaction that wrote the change together with ``success_put``.
Applier = Callable[[Operation, Put], Awaitable[int]]


class OperationRunner:
    def __init__(
        self,
        store: Store,
        appliers: Mapping[OperationType, Applier],
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._appliers = appliers
        self._clock = clock
        self._finished: dict[str, asyncio.Future[int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight: dict[str, str] = {}  # target (e.g. instance key) -> operation id

    async def resume(self) -> None:
        """Run again every operation a previous process left unfinished."""
        entries, _ = await self._store.range(keys.OPERATIONS)
        for kv in entries:
            op = Operation.model_validate_json(kv.value)
            if op.status in (OperationStatus.SUBMITTED, OperationStatus.PENDING):
                log.info("resuming operation", extra={"operation": op.id, "type": op.type})
                self._start(op, target=None)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def in_flight(self, target: str) -> str | None:
        return self._in_flight.get(target)

    async def submit(
        self,
        op_type: OperationType,
        targets: dict[str, str],
        request: dict[str, Any],
        owner: str,
        *,
        target: str | None = None,
    ) -> Operation:
        """Store a SUBMITTED operation and start carrying it out.

        ``target`` names what the operation changes; a second operation on the same target
        while the first runs is refused with DuplicateRequest, as Cloud Map does.
        """
        if target is not None and (running := self._in_flight.get(target)) is not None:
            raise RegistryError(
                "DuplicateRequest",
                f"operation {running} on the same resource is still in progress",
                DuplicateOperationId=running,
            )
        now = self._clock()
        op = Operation(
            id=new_operation_id(),
            type=op_type,
            status=OperationStatus.SUBMITTED,
            create_date=now,
            update_date=now,
            targets=targets,
            owner_account=owner,
            request=request,
        )
        key = keys.operation_key(op.id)
        await self._store.txn([Compare(key, 0)], [Put(key, op.model_dump_json().encode())])
        self._start(op, target)
        return op

    async def wait(self, operation_id: str, timeout: float) -> int | None:
        """The revision that completed the operation, or None if it is not done in time."""
        future = self._finished.get(operation_id)
        if future is None:
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except (TimeoutError, RegistryError):
            return None

    async def get(self, operation_id: str) -> Operation | None:
        kv = await self._store.get(keys.operation_key(operation_id))
        return None if kv is None else Operation.model_validate_json(kv.value)

    async def list(self) -> list[Operation]:
        entries, _ = await self._store.range(keys.OPERATIONS)
        return [Operation.model_validate_json(kv.value) for kv in entries]

    async def prune(self, older_than: datetime) -> int:
        """Forget finished operations last updated before ``older_than``."""
        deletes: list[Put | Delete] = []
        for op in await self.list():
            finished = op.status in (OperationStatus.SUCCESS, OperationStatus.FAIL)
            if finished and op.update_date < older_than:
                deletes.append(Delete(keys.operation_key(op.id)))
        if deletes:
            await self._store.txn([], deletes)
        return len(deletes)

    # -- running -------------------------------------------------------------------------

    def _start(self, op: Operation, target: str | None) -> None:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._finished[op.id] = future
        if target is not None:
            self._in_flight[target] = op.id
        task = asyncio.create_task(self._run(op, future, target), name=f"operation-{op.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, op: Operation, future: asyncio.Future[int], target: str | None) -> None:
        try:
            revision = await self._execute(op)
            if not future.done():
                future.set_result(revision)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: waiters may have gone
            if not isinstance(exc, Exception):
                raise
        finally:
            if target is not None and self._in_flight.get(target) == op.id:
                del self._in_flight[target]
            asyncio.get_running_loop().call_later(60.0, self._finished.pop, op.id, None)

    async def _execute(self, op: Operation) -> int:
        key = keys.operation_key(op.id)
        pending = op.model_copy(
            update={"status": OperationStatus.PENDING, "update_date": self._clock()}
        )
        await self._store.txn([], [Put(key, pending.model_dump_json().encode())])
        done = pending.model_copy(
            update={"status": OperationStatus.SUCCESS, "update_date": self._clock()}
        )
        try:
            return await self._appliers[op.type](pending, Put(key, done.model_dump_json().encode()))
        except RegistryError as error:
            failed = pending.model_copy(
                update={
                    "status": OperationStatus.FAIL,
                    "update_date": self._clock(),
                    "error_code": error.code,
                    "error_message": error.message,
                }
            )
            result = await self._store.txn([], [Put(key, failed.model_dump_json().encode())])
            log.info(
                "operation failed",
                extra={"operation": op.id, "code": error.code, "error": error.message},
            )
            return result.revision
