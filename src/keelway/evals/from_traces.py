"""Dataset cases made from production traces.

A trace becomes a case when it was stored with its payloads: a request
that named a prompt gives the prompt's variables (and any messages sent
after the prompt's); a request without one gives its messages. The case id
is ``trace-`` and the trace id, so a trace is added to a dataset once.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import exists, or_, select

from keelway.governance.errors import Invalid
from keelway.store.database import Database
from keelway.store.models import Trace, TraceScore

# Trace columns a filter may compare for equality.
COLUMN_FILTERS = (
    "prompt",
    "prompt_version",
    "model",
    "team",
    "user",
    "use_case",
    "segment",
    "route",
    "status",
    "experiment",
    "variant",
)
TRACE_FILTERS = (*COLUMN_FILTERS, "feedback", "since")
# At most 9 digits, so int() and timedelta get no absurd numbers.
DURATION = re.compile(r"^([0-9]{1,9})([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_filters(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``FIELD=VALUE`` and ``FIELD!=VALUE`` items; raise Invalid on a bad one.

    A column filter with ``!=`` keeps traces whose field differs (or is
    unset); it is stored under the key ``FIELD!``.
    """
    filters: dict[str, Any] = {}
    for item in items:
        field, equals, value = item.partition("=")
        field = field.strip()
        negated = field.endswith("!")
        field = field.removesuffix("!").strip()
        if not equals or not value:
            raise Invalid(f"filter {item!r} is not FIELD=VALUE or FIELD!=VALUE")
        if negated and field not in COLUMN_FILTERS:
            raise Invalid(
                f"filter {field!r} takes '=' only; '!=' works on "
                f"{', '.join(COLUMN_FILTERS)}"
            )
        if field not in TRACE_FILTERS:
            raise Invalid(
                f"unknown trace filter {field!r}; use one of {', '.join(TRACE_FILTERS)}"
            )
        if "\x00" in value:
            raise Invalid(f"filter {field} must not contain NUL characters")
        if field == "since":
            match = DURATION.match(value)
            if match is None:
                raise Invalid(
                    f"since must be a duration such as 24h or 7d, not {value!r}"
                )
            amount, unit = int(match.group(1)), match.group(2)
            try:
                filters[field] = datetime.now(UTC) - timedelta(**{UNITS[unit]: amount})
            except OverflowError:
                raise Invalid(f"since {value!r} reaches before the year 1") from None
        elif field == "feedback":
            if value not in ("up", "down"):
                raise Invalid("feedback must be up or down")
            filters[field] = value
        else:
            filters[field + "!" if negated else field] = value
    return filters


def answer_text(response_body: str | None) -> str | None:
    if not response_body:
        return None
    try:
        data = orjson.loads(response_body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    choices = data.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message") or {}
        content = message.get("content") if isinstance(message, dict) else None
        return content if isinstance(content, str) else None
    blocks = data.get("content")
    if isinstance(blocks, list):
        texts = [
            block.get("text", "")
            for block in blocks
            if isinstance(block, dict) and block.get("type") == "text"
        ]
        return "".join(texts) or None
    return None


def trace_case(row: Trace, expected_from_output: bool) -> dict[str, Any] | None:
    """Return the case a stored trace makes, or None when it has no payload."""
    if not row.request_body or row.request_truncated:
        return None
    try:
        body = orjson.loads(row.request_body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    case: dict[str, Any] = {"id": f"trace-{row.id}"}
    variables = body.get("variables")
    messages = body.get("messages")
    if row.prompt and isinstance(variables, dict):
        case["variables"] = variables
    if isinstance(messages, list) and messages:
        case["messages"] = [item for item in messages if isinstance(item, dict)]
    if not case.get("variables") and not case.get("messages"):
        return None
    if expected_from_output:
        answer = answer_text(row.response_body)
        if answer and not row.response_truncated:
            case["expected"] = answer
    case["tags"] = ["from-traces"]
    case["metadata"] = {
        "trace_id": row.id,
        "prompt": row.prompt,
        "prompt_version": row.prompt_version,
        "model": row.model,
        "started_at": row.started_at.isoformat() if row.started_at else None,
    }
    return case


def cases_from_traces(
    database: Database,
    filters: dict[str, Any],
    limit: int,
    expected_from_output: bool = False,
    known: Collection[str] = (),
) -> tuple[list[dict[str, Any]], int]:
    """Return cases from the newest matching traces, and how many had no payload.

    Cases whose id is in ``known`` are left out and do not count towards
    ``limit``, so a dataset that already contains the newest traces gets
    older ones.
    """
    query = (
        select(Trace)
        .order_by(Trace.started_at.desc(), Trace.id.desc())
        .limit(limit + len(known))
    )
    for field in COLUMN_FILTERS:
        column = getattr(Trace, field)
        if field in filters:
            query = query.where(column == filters[field])
        if field + "!" in filters:
            query = query.where(or_(column.is_(None), column != filters[field + "!"]))
    if "since" in filters:
        query = query.where(Trace.started_at >= filters["since"])
    if "feedback" in filters:
        value = 1.0 if filters["feedback"] == "up" else 0.0
        query = query.where(
            exists().where(
                TraceScore.trace_id == Trace.id,
                TraceScore.source == "feedback",
                TraceScore.value == value,
            )
        )
    cases: list[dict[str, Any]] = []
    skipped = 0
    with database.session() as session:
        for row in session.scalars(query):
            if len(cases) + skipped >= limit:
                break
            if f"trace-{row.id}" in known:
                continue
            case = trace_case(row, expected_from_output)
            if case is None:
                skipped += 1
            else:
                cases.append(case)
    return cases, skipped
