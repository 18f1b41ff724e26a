"""The batch writer that takes traces off the hot path.

Requests hand finished traces to a bounded asyncio queue; one task drains it
in batches and inserts each batch in a single transaction on a worker thread.
A batch is written when it is full or ``flush_interval`` seconds after its
first trace arrived, whichever comes first.
When the queue is full, requests wait for room by default, so load slows the
gateway down instead of losing traces. ``when_full: drop`` trades that for
latency: drops are counted and logged. On shutdown the queue is drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from sqlalchemy import insert, select
from sqlalchemy.exc import (
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)

from keelway.monitoring.metrics import Metrics
from keelway.store.database import Database
from keelway.store.models import BudgetLedgerEntry, ShadowSample, Span, Trace
from keelway.tracing.records import TraceRecord

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)
# Errors that a later attempt can get past: a lost connection, a locked file.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, DisconnectionError)
DROP_LOG_INTERVAL = 10.0


class TraceWriter:
    """Bounded queue plus batch writer for traces and their spans."""

    def __init__(
        self,
        database: Database,
        metrics: Metrics,
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 0.05,
        when_full: Literal["wait", "drop"] = "wait",
    ) -> None:
        self.database = database
        self.metrics = metrics
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.when_full = when_full
        self.queue: asyncio.Queue[TraceRecord] = asyncio.Queue(queue_size)
        self.dropped = 0
        self._last_drop_log = 0.0
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        # Called with each batch once it is stored; must return at once.
        self.listeners: list[Callable[[list[TraceRecord]], None]] = []

    async def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="keelway-trace-writer")

    async def submit(self, trace: TraceRecord) -> None:
        """Queue a trace, waiting for room unless the writer drops when full."""
        if self.when_full == "wait":
            await self.queue.put(trace)
            return
        try:
            self.queue.put_nowait(trace)
        except asyncio.QueueFull:
            self._count_drop(trace)

    def enqueue(self, trace: TraceRecord) -> None:
        """Queue a trace without waiting, for code that must not suspend.

        A full queue in ``wait`` mode hands the trace to a task that waits for
        room, so it is still written; :meth:`stop` waits for those tasks.
        """
        try:
            self.queue.put_nowait(trace)
        except asyncio.QueueFull:
            if self.when_full == "drop":
                self._count_drop(trace)
                return
            task = asyncio.get_running_loop().create_task(self.queue.put(trace))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def wait_for_room(self) -> None:
        """Wait until the queue has room, in ``wait`` mode only."""
        while self.when_full == "wait" and self.queue.full():
            await asyncio.sleep(0.005)

    def _count_drop(self, trace: TraceRecord) -> None:
        self.dropped += 1
        self.metrics.traces_dropped.inc()
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL:
            self._last_drop_log = now
            log.warning(
                "trace queue full: dropped trace %s (request %s); %d dropped so far",
                trace.id,
                trace.request_id,
                self.dropped,
            )

    async def stop(self) -> None:
        """Write every queued trace, then stop the writer task."""
        if self._task is None:
            return
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self.queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        log.info("trace writer stopped; %d traces dropped in total", self.dropped)

    async def _run(self) -> None:
        while True:
            batch = await self._collect_batch()
            self.metrics.trace_queue.set(self.queue.qsize())
            await self._write_with_retry(batch)
            for listener in self.listeners:
                try:
                    listener(batch)
                except Exception:  # noqa: BLE001 - a listener must not stop writes
                    log.exception("trace batch listener %r failed", listener)
            for _ in batch:
                self.queue.task_done()

    async def _collect_batch(self) -> list[TraceRecord]:
        batch = [await self.queue.get()]
        # One sleep per batch costs less than waiting on the queue per trace.
        if self.queue.qsize() < self.batch_size - 1 and self.flush_interval > 0:
            await asyncio.sleep(self.flush_interval)
        while len(batch) < self.batch_size:
            try:
                batch.append(self.queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    async def _write_with_retry(self, batch: list[TraceRecord]) -> None:
        attempt = 0
        while True:
            try:
                await asyncio.to_thread(self.write_batch, batch)
                self.metrics.traces_written.inc(len(batch))
                return
            except TRANSIENT_ERRORS as error:
                self.metrics.trace_write_errors.inc()
                delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
                log.error(
                    "writing %d traces failed (attempt %d), retrying in %.2fs: %s",
                    len(batch),
                    attempt + 1,
                    delay,
                    error.__class__.__name__,
                )
                attempt += 1
                await asyncio.sleep(delay)
            except Exception as error:  # noqa: BLE001 - the writer task must live on
                # A row the store rejects (or cannot encode) would fail every
                # retry of the batch and stall the queue, so write the traces
                # one at a time and drop only those that fail.
                self.metrics.trace_write_errors.inc()
                log.error(
                    "writing %d traces failed, writing them one by one: %s",
                    len(batch),
                    error.__class__.__name__,
                )
                await asyncio.to_thread(self._write_each, batch)
                return

    def _write_each(self, batch: list[TraceRecord]) -> None:
        for trace in batch:
            try:
                self.write_batch([trace])
                self.metrics.traces_written.inc()
            except Exception as error:  # noqa: BLE001 - one bad row must not stop the rest
                self.dropped += 1
                self.metrics.traces_dropped.inc()
                log.error(
                    "the store rejected trace %s (request %s), dropped: %s",
                    trace.id,
                    trace.request_id,
                    error.__class__.__name__,
                )

    def write_batch(self, batch: list[TraceRecord]) -> None:
        """Insert traces and spans in one transaction; safe to call again."""
        traces = [trace.row() for trace in batch]
        spans = [span.row(trace.id) for trace in batch for span in trace.spans]
        ledger = [_ledger_row(entry) for trace in batch for entry in trace.ledger]
        samples = [row for trace in batch for row in trace.samples]
        try:
            with self.database.engine.begin() as connection:
                connection.execute(insert(Trace), traces)
                if spans:
                    connection.execute(insert(Span), spans)
                if ledger:
                    # In the trace's transaction, so the ledger and the
                    # traces' costs never disagree.
                    connection.execute(insert(BudgetLedgerEntry), ledger)
                if samples:
                    connection.execute(insert(ShadowSample), samples)
        except IntegrityError:
            # A retry after a commit whose acknowledgement was lost: keep the
            # rows that are new and skip those already stored.
            self._write_missing(batch)

    def _write_missing(self, batch: list[TraceRecord]) -> None:
        ids = [trace.id for trace in batch]
        with self.database.engine.begin() as connection:
            stored = set(connection.scalars(select(Trace.id).where(Trace.id.in_(ids))))
            missing = [trace for trace in batch if trace.id not in stored]
            if not missing:
                return
            connection.execute(insert(Trace), [trace.row() for trace in missing])
            spans = [span.row(t.id) for t in missing for span in t.spans]
            if spans:
                connection.execute(insert(Span), spans)
            ledger = [_ledger_row(entry) for t in missing for entry in t.ledger]
            if ledger:
                connection.execute(insert(BudgetLedgerEntry), ledger)
            samples = [row for t in missing for row in t.samples]
            if samples:
                connection.execute(insert(ShadowSample), samples)


def _ledger_row(entry: Any) -> dict[str, Any]:
    return {
        "id": entry.id,
        "trace_id": entry.trace_id,
        "scope": entry.scope,
        "period": entry.period,
        "period_start": entry.period_start,
        "amount_nano_usd": entry.amount_nano_usd,
        "created_at": entry.created_at,
    }
