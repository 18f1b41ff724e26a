"""``POST /v1/feedback``: scores from the end user's application on a trace.

The body names the trace (keelway sends its id in the ``x-keelway-trace-id``
header of every model response) and gives a thumbs (``"up"``/``"down"``,
stored as 1 and 0) or a numeric score in [0, 1], with an optional comment.
A virtual key may score only traces of its own requests (the master key may
score any).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from keelway.gateway.body import read_json_object
from keelway.gateway.errors import GatewayError, InvalidField
from keelway.gateway.responses import error_response, json_response
from keelway.store.database import Database
from keelway.store.models import Trace, TraceScore

MAX_COMMENT = 4000
MAX_NAME = 100


class TraceNotFound(GatewayError):
    status = 404
    error_type = "not_found_error"
    code = "trace_not_found"


def _score(body: dict[str, Any]) -> float:
    thumbs, score = body.get("thumbs"), body.get("score")
    if (thumbs is None) == (score is None):
        raise InvalidField(
            "send exactly one of 'thumbs' (\"up\" or \"down\") and 'score' (0 to 1)",
            param="score",
        )
    if thumbs is not None:
        if thumbs not in ("up", "down"):
            raise InvalidField('thumbs must be "up" or "down"', param="thumbs")
        return 1.0 if thumbs == "up" else 0.0
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise InvalidField("score must be a number from 0 to 1", param="score")
    if not math.isfinite(score) or not 0 <= score <= 1:
        raise InvalidField(f"score must be from 0 to 1, got {score}", param="score")
    return float(score)


def _store(
    database: Database, trace_id: str, key_id: str | None, row: TraceScore
) -> bool:
    with database.session() as session, session.begin():
        owner = session.execute(
            select(Trace.id, Trace.key_id).where(Trace.id == trace_id)
        ).first()
        if owner is None or (key_id is not None and owner.key_id != key_id):
            return False
        session.add(row)
        return True


async def submit(request: Request) -> Response:
    """POST /v1/feedback."""
    pipeline = request.app.state.pipeline
    database: Database = request.app.state.database
    try:
        caller = await pipeline.auth.authenticate(request)
        server = pipeline.config.server
        body = await read_json_object(
            request, server.max_body_bytes, server.body_timeout
        )
        trace_id = body.get("trace_id")
        if not isinstance(trace_id, str) or not trace_id:
            raise InvalidField("missing required field 'trace_id'", param="trace_id")
        # PostgreSQL rejects NUL in any text parameter, even in a lookup.
        if "\x00" in trace_id:
            raise InvalidField(
                "trace_id must not contain NUL characters", param="trace_id"
            )
        value = _score(body)
        name = body.get("name", "user_feedback")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
            raise InvalidField(
                f"name must be a string of 1 to {MAX_NAME} characters", param="name"
            )
        if "\x00" in name:
            raise InvalidField("name must not contain NUL characters", param="name")
        comment = body.get("comment")
        if comment is not None and (
            not isinstance(comment, str) or len(comment) > MAX_COMMENT
        ):
            raise InvalidField(
                f"comment must be a string of at most {MAX_COMMENT} characters",
                param="comment",
            )
        row = TraceScore(
            id=uuid.uuid4().hex,
            trace_id=trace_id,
            name=name,
            value=value,
            source="feedback",
            comment=comment.replace("\x00", "\ufffd") if comment else None,
            author=caller.key_name,
            created_at=datetime.now(UTC),
        )
        stored = await asyncio.to_thread(
            _store, database, trace_id, None if caller.is_master else caller.key_id, row
        )
        if not stored:
            raise TraceNotFound(
                f"no trace {trace_id!r} of this API key; traces are written a "
                "moment after the response, so retry shortly",
                param="trace_id",
            )
    except GatewayError as error:
        return error_response(error)
    return json_response({"id": row.id, "trace_id": trace_id, "value": value}, 201)
