"""Trace batch writer and trace records: payload limits, skew, backpressure, drops."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from keelway.monitoring.metrics import Metrics
from keelway.store.database import Database, open_database
from keelway.store.traces import TraceStore
from keelway.tracing.records import SpanRecord, TraceRecord, encode_payload
from keelway.tracing.writer import TraceWriter


def _trace(number: int) -> TraceRecord:
    trace = TraceRecord(route="chat", request_id=f"writer-{number}")
    trace.payloads = "full"
    return trace


def test_small_payload_kept_whole() -> None:
    payload = encode_payload({"a": "b"}, 100)
    assert payload.text == '{"a":"b"}'
    assert payload.size == 9
    assert payload.truncated is False


def test_large_payload_truncated_with_marker() -> None:
    body = {"text": "é" * 1000}
    payload = encode_payload(body, 300)
    assert payload.truncated is True
    assert payload.size == len(orjson.dumps(body))
    assert payload.text is not None
    assert payload.text.endswith(f"of {payload.size} bytes]")
    assert "truncated by keelway" in payload.text


def test_clock_skew_span_flagged() -> None:
    now = datetime.now(UTC)
    span = SpanRecord("external", started_at=now, ended_at=now - timedelta(seconds=2))
    assert span.clock_skew is True
    assert span.duration_ms is None


def test_spans_measure_monotonic_time() -> None:
    trace = _trace(0)
    span = trace.span("provider", trace.started + 0.010, trace.started + 0.035)
    assert span.duration_ms == pytest.approx(25.0)
    assert span.clock_skew is False


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'writer.db'}")
    yield database
    database.close()


def test_skewed_span_stored_with_flag(database: Database) -> None:
    trace = _trace(1)
    now = datetime.now(UTC)
    trace.spans.append(
        SpanRecord("external", started_at=now, ended_at=now - timedelta(seconds=1))
    )
    TraceWriter(database, Metrics()).write_batch([trace])
    stored = TraceStore(database).get(trace.id)
    assert stored is not None
    assert stored["spans"][0]["clock_skew"] is True
    assert stored["spans"][0]["duration_ms"] is None


def test_write_batch_twice_keeps_one_copy(database: Database) -> None:
    writer = TraceWriter(database, Metrics())
    batch = [_trace(n) for n in range(5)]
    writer.write_batch(batch)
    writer.write_batch(batch + [_trace(99)])
    assert TraceStore(database).count() == 6


def test_full_queue_waits_for_room(database: Database) -> None:
    async def scenario() -> int:
        writer = TraceWriter(database, Metrics(), queue_size=2, batch_size=1)
        # The writer is not started, so the queue fills and a third submit waits.
        await writer.submit(_trace(1))
        await writer.submit(_trace(2))
        third = asyncio.create_task(writer.submit(_trace(3)))
        await asyncio.sleep(0.05)
        assert not third.done()
        await writer.start()
        await asyncio.wait_for(third, 5)
        await writer.stop()
        return writer.dropped

    assert asyncio.run(scenario()) == 0
    assert TraceStore(database).count() == 3


def test_drop_mode_counts_drops(database: Database) -> None:
    metrics = Metrics()

    async def scenario() -> int:
        writer = TraceWriter(database, metrics, queue_size=2, when_full="drop")
        for number in range(5):
            await writer.submit(_trace(number))
        await writer.start()
        await writer.stop()
        return writer.dropped

    assert asyncio.run(scenario()) == 3
    assert TraceStore(database).count() == 2
    assert b"keelway_traces_dropped_total 3.0" in metrics.render()


def test_enqueue_when_full_still_writes(database: Database) -> None:
    async def scenario() -> None:
        writer = TraceWriter(database, Metrics(), queue_size=1)
        for number in range(4):
            writer.enqueue(_trace(number))
        await writer.start()
        await writer.stop()

    asyncio.run(scenario())
    assert TraceStore(database).count() == 4


class _CountingWriter(TraceWriter):
    """A writer that records the size of each batch it inserts."""

    def __init__(
        self, database: Database, *, batch_size: int = 500, flush_interval: float
    ) -> None:
        super().__init__(
            database, Metrics(), batch_size=batch_size, flush_interval=flush_interval
        )
        self.batches: list[int] = []

    def write_batch(self, batch: list[TraceRecord]) -> None:
        self.batches.append(len(batch))
        super().write_batch(batch)


def test_quiet_traffic_shares_a_batch(database: Database) -> None:
    async def scenario() -> list[int]:
        writer = _CountingWriter(database, flush_interval=0.5)
        await writer.start()
        for number in range(3):
            await writer.submit(_trace(number))
            await asyncio.sleep(0.02)
        await writer.stop()
        return writer.batches

    assert asyncio.run(scenario()) == [3]
    assert TraceStore(database).count() == 3


def test_full_batch_skips_the_wait(database: Database) -> None:
    async def scenario() -> tuple[list[int], float]:
        writer = _CountingWriter(database, batch_size=4, flush_interval=30.0)
        for number in range(4):
            await writer.submit(_trace(number))
        await writer.start()
        started = asyncio.get_running_loop().time()
        await writer.stop()
        return writer.batches, asyncio.get_running_loop().time() - started

    batches, waited = asyncio.run(scenario())
    assert batches == [4]
    # A full queue is written at once rather than after the 30 s interval.
    assert waited < 30


def test_rejected_trace_spares_its_batch(database: Database) -> None:
    metrics = Metrics()
    poisoned = _trace(2)
    # JSON cannot encode this tag, so the store rejects the row on every try.
    poisoned.tags = [object()]  # type: ignore[list-item]

    async def scenario() -> int:
        writer = TraceWriter(database, metrics)
        for trace in (_trace(1), poisoned, _trace(3)):
            await writer.submit(trace)
        await writer.start()
        await writer.stop()
        return writer.dropped

    assert asyncio.run(scenario()) == 1
    store = TraceStore(database)
    assert store.count() == 2
    assert store.get(poisoned.id) is None
    assert b"keelway_traces_dropped_total 1.0" in metrics.render()
