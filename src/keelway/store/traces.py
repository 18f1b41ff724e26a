"""Reading traces back: listing, one trace with its spans and scores, usage sums."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from keelway.store.database import Database
from keelway.store.models import Span, Trace, TraceScore

# Shortest trace id prefix accepted in place of a whole id, as git does for hashes.
MIN_PREFIX = 6

USAGE_GROUPS = {
    "model": Trace.model,
    "key": Trace.key_name,
    "user": Trace.user,
    "use_case": Trace.use_case,
    "segment": Trace.segment,
    "team": Trace.team,
    "deployment": Trace.deployment,
    "prompt": Trace.prompt,
    # A registry prompt's name and version; a free-form metadata.prompt alone.
    "prompt_version": func.coalesce(
        Trace.prompt + "@" + Trace.prompt_version, Trace.prompt
    ),
    "route": Trace.route,
}


def trace_dict(trace: Trace) -> dict[str, Any]:
    """Return every column of a trace as a plain dict."""
    return {
        column.name: getattr(trace, column.key) for column in Trace.__table__.columns
    }


def span_dict(span: Span) -> dict[str, Any]:
    """Return every column of a span as a plain dict."""
    return {column.name: getattr(span, column.key) for column in Span.__table__.columns}


def score_dict(score: TraceScore) -> dict[str, Any]:
    """Return every column of a trace score as a plain dict."""
    return {
        column.name: getattr(score, column.key)
        for column in TraceScore.__table__.columns
    }


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Tokens and cost summed over one group of traces."""

    group: str | None
    requests: int
    errors: int
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: float
    unpriced: int
    # Number of scores with source "feedback" on the group's traces, each row
    # counted, and their mean value (None when the group has none).
    feedback_count: int = 0
    feedback_mean: float | None = None


class TraceStore:
    """Domain verbs for reading traces."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def recent(
        self,
        *,
        since: datetime | None = None,
        model: str | None = None,
        user: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Return the newest traces matching every filter given."""
        query = select(Trace).order_by(Trace.started_at.desc()).limit(limit)
        if since is not None:
            query = query.where(Trace.started_at >= since)
        if model is not None:
            query = query.where(Trace.model == model)
        if user is not None:
            query = query.where(Trace.user == user)
        with self.database.session() as session:
            return [trace_dict(row) for row in session.scalars(query)]

    def get(self, trace_id: str) -> dict[str, Any] | None:
        """Return one trace by id, request id or unique id prefix, or None."""
        with self.database.session() as session:
            trace = (
                session.get(Trace, trace_id)
                or session.scalar(
                    select(Trace).where(Trace.request_id == trace_id).limit(1)
                )
                or self._by_prefix(session, trace_id)
            )
            if trace is None:
                return None
            spans = session.scalars(
                select(Span).where(Span.trace_id == trace.id).order_by(Span.started_at)
            )
            scores = session.scalars(
                select(TraceScore)
                .where(TraceScore.trace_id == trace.id)
                .order_by(TraceScore.created_at, TraceScore.id)
            )
            result = trace_dict(trace)
            result["spans"] = [span_dict(span) for span in spans]
            result["scores"] = [score_dict(score) for score in scores]
            return result

    @staticmethod
    def _by_prefix(session: Session, prefix: str) -> Trace | None:
        if len(prefix) < MIN_PREFIX or not prefix.isalnum():
            return None
        query = select(Trace).where(Trace.id.startswith(prefix)).limit(2)
        matches = list(session.scalars(query))
        return matches[0] if len(matches) == 1 else None

    def count(self) -> int:
        """Return the number of stored traces."""
        with self.database.session() as session:
            return int(session.scalar(select(func.count()).select_from(Trace)) or 0)

    def usage(self, by: str = "model", since: datetime | None = None) -> list[UsageRow]:
        """Sum tokens, cost and user feedback per group, the costliest group first."""
        column = USAGE_GROUPS[by]
        cost = func.coalesce(func.sum(Trace.cost_usd), 0.0)
        # Feedback is summed per trace first, so the outer join adds at most
        # one row per trace and leaves the request and token sums unchanged.
        feedback = (
            select(
                TraceScore.trace_id,
                func.count().label("count"),
                func.sum(TraceScore.value).label("total"),
            )
            .where(TraceScore.source == "feedback")
            .group_by(TraceScore.trace_id)
            .subquery()
        )
        query = (
            select(
                column,
                func.count(),
                func.sum(case((Trace.status != "ok", 1), else_=0)),
                func.coalesce(func.sum(Trace.input_tokens), 0),
                func.coalesce(func.sum(Trace.cache_read_tokens), 0),
                func.coalesce(func.sum(Trace.cache_write_tokens), 0),
                func.coalesce(func.sum(Trace.output_tokens), 0),
                func.coalesce(func.sum(Trace.reasoning_tokens), 0),
                cost,
                func.sum(
                    case(
                        (Trace.cost_usd.is_(None) & Trace.input_tokens.isnot(None), 1),
                        else_=0,
                    )
                ),
                func.coalesce(func.sum(feedback.c.count), 0),
                func.coalesce(func.sum(feedback.c.total), 0.0),
            )
            .select_from(Trace)
            .outerjoin(feedback, feedback.c.trace_id == Trace.id)
            .group_by(column)
            .order_by(cost.desc())
        )
        if since is not None:
            query = query.where(Trace.started_at >= since)
        with self.database.session() as session:
            return [
                UsageRow(
                    group=row[0],
                    requests=int(row[1]),
                    errors=int(row[2] or 0),
                    input_tokens=int(row[3]),
                    cache_read_tokens=int(row[4]),
                    cache_write_tokens=int(row[5]),
                    output_tokens=int(row[6]),
                    reasoning_tokens=int(row[7]),
                    cost_usd=float(row[8]),
                    unpriced=int(row[9] or 0),
                    feedback_count=int(row[10]),
                    feedback_mean=float(row[11]) / int(row[10]) if row[10] else None,
                )
                for row in session.execute(query)
            ]
