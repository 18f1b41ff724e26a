"""In-memory trace and span records, built on the hot path and written later."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from keelway.tracing.usage import Usage

TRUNCATION_MARKER = "\n...[truncated by keelway: kept {kept} of {size} bytes]"


def new_id() -> str:
    """Return a random 32-character hex id."""
    return uuid.uuid4().hex


@dataclass(slots=True)
class Payload:
    """A request or response body as stored: maybe cut, always with its full size."""

    text: str | None
    size: int | None
    truncated: bool = False


def encode_payload(value: Any, limit: int) -> Payload:
    """Serialize ``value`` to JSON, cutting it to ``limit`` bytes with a marker."""
    data = value if isinstance(value, bytes) else orjson.dumps(value)
    size = len(data)
    if size <= limit:
        return Payload(data.decode("utf-8", "replace"), size)
    kept = data[:limit].decode("utf-8", "ignore")
    marker = TRUNCATION_MARKER.format(kept=len(kept.encode()), size=size)
    return Payload(kept + marker, size, truncated=True)


@dataclass(slots=True)
class SpanRecord:
    """One timed step of a request."""

    name: str
    started_at: datetime
    ended_at: datetime
    status: str = "ok"
    error: str | None = None
    attributes: dict[str, Any] | None = None
    id: str = field(default_factory=new_id)
    parent_id: str | None = None

    @property
    def clock_skew(self) -> bool:
        return self.ended_at < self.started_at

    @property
    def duration_ms(self) -> float | None:
        if self.clock_skew:
            return None
        return (self.ended_at - self.started_at).total_seconds() * 1000

    def row(self, trace_id: str) -> dict[str, Any]:
        """Return the spans table row for this span."""
        return {
            "id": self.id,
            "trace_id": trace_id,
            "parent_id": self.parent_id,
            "name": self.name,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_ms": self.duration_ms,
            "clock_skew": self.clock_skew,
            "status": self.status,
            "error": self.error.replace("\x00", "\ufffd") if self.error else None,
            "attributes": self.attributes,
        }


class SpanTimer:
    """Times a span with the monotonic clock, anchored to the trace's wall clock."""

    def __init__(self, anchor_wall: datetime, anchor_monotonic: float) -> None:
        self._wall = anchor_wall
        self._monotonic = anchor_monotonic

    def at(self, monotonic: float) -> datetime:
        """Return the wall-clock time of a ``time.perf_counter()`` reading."""
        return self._wall + timedelta(seconds=monotonic - self._monotonic)


@dataclass(slots=True)
class TraceRecord:
    """Everything keelway stores about one request."""

    route: str
    request_id: str
    id: str = field(default_factory=new_id)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.perf_counter)
    model: str | None = None
    deployment: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    key_id: str | None = None
    key_name: str | None = None
    team: str | None = None
    user: str | None = None
    use_case: str | None = None
    segment: str | None = None
    prompt: str | None = None
    prompt_version: str | None = None
    experiment: str | None = None
    variant: str | None = None
    tags: list[str] | None = None
    attributes: dict[str, Any] | None = None
    stream: bool = False
    status: str = "ok"
    http_status: int = 200
    error_type: str | None = None
    error_message: str | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    price_table_version: str | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    payloads: str = "full"
    request: Payload | None = None
    response: Payload | None = None
    spans: list[SpanRecord] = field(default_factory=list)
    # Budget ledger rows (keelway.limits.LedgerEntry) written with the trace.
    ledger: list[Any] = field(default_factory=list)
    # Rows of the shadow_samples table written with the trace: a shadow
    # call's trace carries the sample that pairs it with the live answer.
    samples: list[dict[str, Any]] = field(default_factory=list)

    def span(
        self,
        name: str,
        start: float,
        end: float,
        *,
        status: str = "ok",
        error: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> SpanRecord:
        """Add a span timed by two ``time.perf_counter()`` readings."""
        clock = SpanTimer(self.started_at, self.started)
        span = SpanRecord(
            name=name,
            started_at=clock.at(start),
            ended_at=clock.at(end),
            status=status,
            error=error,
            attributes=attributes,
        )
        self.spans.append(span)
        return span

    def row(self) -> dict[str, Any]:
        """Return the traces table row for this trace."""
        row = self._columns()
        # PostgreSQL text cannot hold NUL, and clients can send one inside a
        # JSON string (a model name, a user id), which would fail the batch.
        for name, value in row.items():
            if isinstance(value, str) and "\x00" in value:
                row[name] = value.replace("\x00", "\ufffd")
        if self.tags and any("\x00" in tag for tag in self.tags):
            row["tags"] = [tag.replace("\x00", "\ufffd") for tag in self.tags]
        return row

    def _columns(self) -> dict[str, Any]:
        usage = self.usage
        request = self.request or Payload(None, None)
        response = self.response or Payload(None, None)
        return {
            "id": self.id,
            "request_id": self.request_id,
            "started_at": self.started_at,
            "route": self.route,
            "model": self.model,
            "deployment": self.deployment,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "key_id": self.key_id,
            "key_name": self.key_name,
            "team": self.team,
            "user": self.user,
            "use_case": self.use_case,
            "segment": self.segment,
            "prompt": self.prompt,
            "prompt_version": self.prompt_version,
            "experiment": self.experiment,
            "variant": self.variant,
            "tags": self.tags,
            "attributes": self.attributes,
            "stream": self.stream,
            "status": self.status,
            "http_status": self.http_status,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "input_tokens": usage.input_tokens if usage else None,
            "cache_read_tokens": usage.cache_read_tokens if usage else None,
            "cache_write_tokens": usage.cache_write_tokens if usage else None,
            "output_tokens": usage.output_tokens if usage else None,
            "reasoning_tokens": usage.reasoning_tokens if usage else None,
            "usage_source": usage.source if usage else None,
            "usage_tokenizer": usage.tokenizer if usage else None,
            "cost_usd": self.cost_usd,
            "price_table_version": self.price_table_version,
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms,
            "payloads": self.payloads,
            "request_body": request.text,
            "request_size": request.size,
            "request_truncated": request.truncated,
            "response_body": response.text,
            "response_size": response.size,
            "response_truncated": response.truncated,
        }


__all__ = [
    "Payload",
    "SpanRecord",
    "TraceRecord",
    "encode_payload",
    "new_id",
]
