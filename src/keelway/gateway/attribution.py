"""Attribution of a request: who it is for and which feature it serves.

Values come from the body (``user``, ``metadata``) or from ``X-Keelway-*``
headers, which win, so a proxy in front of an application can set them.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from keelway.tracing.records import TraceRecord

FIELDS = ("user", "use_case", "segment", "prompt")
MAX_VALUE_LENGTH = 200
MAX_TAGS = 20


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)[:MAX_VALUE_LENGTH] or None


def _tags(value: Any) -> list[str] | None:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        return None
    tags = [str(tag).strip()[:MAX_VALUE_LENGTH] for tag in value if str(tag).strip()]
    return tags[:MAX_TAGS] or None


def attribute(trace: TraceRecord, request: Request, body: dict[str, Any]) -> None:
    """Copy attribution fields from the body and headers onto the trace."""
    metadata = body.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    values = {
        "user": body.get("user") or metadata.get("user") or metadata.get("user_id"),
        "use_case": metadata.get("use_case"),
        "segment": metadata.get("segment"),
        "prompt": metadata.get("prompt"),
    }
    headers = request.headers
    for field in FIELDS:
        header = headers.get(f"x-keelway-{field.replace('_', '-')}")
        if header:
            values[field] = header
    trace.user = _text(values["user"])
    trace.use_case = _text(values["use_case"])
    trace.segment = _text(values["segment"])
    trace.prompt = _text(values["prompt"])
    trace.tags = _tags(headers.get("x-keelway-tags") or metadata.get("tags"))
    known = {"user", "user_id", "use_case", "segment", "prompt", "tags"}
    extra = {k: v for k, v in metadata.items() if k not in known}
    if extra:
        trace.attributes = {"metadata": extra}


def prompt_reference(request: Request, body: dict[str, Any]) -> str | None:
    """Return the request's prompt reference in full, header first."""
    header = request.headers.get("x-keelway-prompt")
    if header:
        return header
    metadata = body.get("metadata")
    value = metadata.get("prompt") if isinstance(metadata, dict) else None
    return None if value is None or isinstance(value, dict | list) else str(value)
