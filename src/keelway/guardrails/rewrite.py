"""Finding the texts of a request or answer, and rewriting spans of them.

A chat body holds text in many places: each message's content (a string or
a list of parts), the arguments of earlier tool calls, tool results and the
prompt's variables. :func:`request_segments` lists them with where they came
from, :func:`join` puts the texts of a group into one string so a scanner
runs once per request instead of once per message, and :class:`Rewriter`
replaces found spans with placeholders and writes the texts back.

Pseudonyms come from a :class:`Vault`: the same value gets the same
placeholder everywhere in a request, numbered by first appearance so a
conversation that is sent again with a new turn keeps its numbering, and a
placeholder that already occurs in the caller's own text is never handed out.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any

from keelway.guardrails.base import Finding, Source

JSONObject = dict[str, Any]
Path = tuple[str | int, ...]

# Placeholders the vault hands out: <EMAIL_ADDRESS_1>.
PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]{0,48})_([1-9][0-9]{0,5})>")
# Two newlines keep entities of neighbouring texts apart for the recognizers.
SEPARATOR = "\n\n"

_ROLE_SOURCES: dict[str, Source] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}


@dataclass(frozen=True, slots=True)
class Segment:
    """One text of a body, the path to it and where it came from."""

    path: Path
    text: str
    source: Source


def request_segments(
    body: JSONObject, context_variables: frozenset[str] = frozenset()
) -> list[Segment]:
    """Return every text of a chat request, in message order.

    Prompt variables come last. Those named in ``context_variables`` count
    as retrieved context; the rest are the caller's.
    """
    found: list[Segment] = []
    messages = body.get("messages")
    if isinstance(messages, list):
        for index, message in enumerate(messages):
            if isinstance(message, dict):
                _message_segments(found, ("messages", index), message)
    # The caller's end-user id and a predicted output reach the upstream too.
    user = body.get("user")
    if isinstance(user, str) and user:
        found.append(Segment(("user",), user, "user"))
    prediction = body.get("prediction")
    if isinstance(prediction, dict):
        _message_segments(found, ("prediction",), {"role": "user", **prediction})
    variables = body.get("variables")
    if isinstance(variables, dict):
        for name, value in variables.items():
            if isinstance(value, str) and value:
                source: Source = "context" if name in context_variables else "user"
                found.append(Segment(("variables", name), value, source))
    return found


def embedding_segments(body: JSONObject) -> list[Segment]:
    """Return the input strings of an embeddings request."""
    value = body.get("input")
    if isinstance(value, str):
        return [Segment(("input",), value, "user")] if value else []
    if isinstance(value, list):
        return [
            Segment(("input", index), item, "user")
            for index, item in enumerate(value)
            if isinstance(item, str) and item
        ]
    return []


def answer_segments(body: JSONObject) -> list[Segment]:
    """Return every text of a ``chat.completion`` answer."""
    found: list[Segment] = []
    choices = body.get("choices")
    if not isinstance(choices, list):
        return found
    for index, choice in enumerate(choices):
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            for segment in _message_segments(
                [], ("choices", index, "message"), message
            ):
                found.append(Segment(segment.path, segment.text, "output"))
    return found


def _message_segments(
    found: list[Segment], path: Path, message: JSONObject
) -> list[Segment]:
    source = _ROLE_SOURCES.get(str(message.get("role")), "user")
    content = message.get("content")
    if isinstance(content, str) and content:
        found.append(Segment((*path, "content"), content, source))
    elif isinstance(content, list):
        for part_index, part in enumerate(content):
            if not isinstance(part, dict):
                continue
            text = part.get("text")
            where = (*path, "content", part_index, "text")
            if isinstance(text, str) and text:
                found.append(Segment(where, text, source))
            elif text is not None and not isinstance(text, str):
                # Not a valid part, but it would reach the upstream as sent.
                dumped = json.dumps(text, ensure_ascii=False)
                found.append(Segment(where, dumped, source))
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for call_index, call in enumerate(calls):
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                where = (*path, "tool_calls", call_index, "function", "arguments")
                _arguments(found, where, function.get("arguments"), source)
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        where = (*path, "function_call", "arguments")
        _arguments(found, where, legacy.get("arguments"), source)
    return found


def _arguments(found: list[Segment], path: Path, value: Any, source: Source) -> None:
    """Add tool-call arguments: a JSON string, or an object sent as one."""
    if isinstance(value, str):
        if value:
            found.append(Segment(path, value, source))
    elif isinstance(value, dict | list):
        # Written back as a JSON string, which is what the OpenAI API takes.
        found.append(Segment(path, json.dumps(value, ensure_ascii=False), source))


@dataclass(slots=True)
class Joined:
    """The texts of several segments as one string, with each one's offset."""

    text: str
    segments: list[Segment]
    starts: list[int]

    def locate(self, finding: Finding) -> tuple[int, Finding] | None:
        """Return the segment a finding starts in and the finding in its offsets.

        A finding that runs over the separator into the next segment is cut
        at its segment's end.
        """
        low, high = 0, len(self.starts) - 1
        while low < high:
            middle = (low + high + 1) // 2
            if self.starts[middle] <= finding.start:
                low = middle
            else:
                high = middle - 1
        start = self.starts[low]
        length = len(self.segments[low].text)
        local_start = finding.start - start
        if local_start >= length and low + 1 < len(self.starts):
            # The match starts in the separator: it belongs to the next text.
            low += 1
            start = self.starts[low]
            length = len(self.segments[low].text)
            local_start = 0
        local_end = min(finding.end - start, length)
        if local_start >= length or local_end <= local_start:
            return None
        return low, Finding(
            finding.kind, local_start, local_end, finding.score, finding.rule
        )


def join(segments: list[Segment]) -> Joined:
    """Join segments with a blank line between each two."""
    starts: list[int] = []
    parts: list[str] = []
    offset = 0
    for segment in segments:
        starts.append(offset)
        parts.append(segment.text)
        offset += len(segment.text) + len(SEPARATOR)
    return Joined(SEPARATOR.join(parts), list(segments), starts)


class Vault:
    """Pseudonyms of one request: placeholder to value and back."""

    def __init__(self, reserved: str = "") -> None:
        # Placeholders the caller wrote themselves must never be handed out,
        # or restoring the answer would put a value where the caller's own
        # text stood.
        self._reserved = {match.group(0) for match in PLACEHOLDER.finditer(reserved)}
        self._by_value: dict[tuple[str, str], str] = {}
        self.values: dict[str, str] = {}
        self._counters: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self.values)

    def placeholder(self, kind: str, value: str) -> str:
        """Return the placeholder of ``value``, handing out a new one if needed."""
        known = self._by_value.get((kind, value))
        if known is not None:
            return known
        tag = re.sub(r"[^A-Z0-9_]", "_", kind.upper())[:48] or "PII"
        if not tag[0].isalpha():
            tag = "X" + tag[:47]
        number = self._counters.get(tag, 0)
        while True:
            number += 1
            candidate = f"<{tag}_{number}>"
            if candidate not in self._reserved:
                break
        self._counters[tag] = number
        self._by_value[(kind, value)] = candidate
        self.values[candidate] = value
        return candidate

    def restore(self, text: str, *, json_string: bool = False) -> str:
        """Put the original values back in place of this vault's placeholders.

        With ``json_string`` the values are escaped as inside a JSON string,
        for tool-call arguments: a value with a line break or a quote would
        otherwise break the arguments' JSON.
        """
        if not self.values or "<" not in text:
            return text

        def value(match: re.Match[str]) -> str:
            found = self.values.get(match.group(0))
            if found is None:
                return match.group(0)
            if json_string:
                return json.dumps(found, ensure_ascii=False)[1:-1]
            return found

        return PLACEHOLDER.sub(value, text)


def redaction(kind: str) -> str:
    """Return the fixed mask of a redacted value: ``<EMAIL_ADDRESS>``."""
    tag = re.sub(r"[^A-Z0-9_]", "_", kind.upper())[:48] or "PII"
    return f"<{tag}>"


@dataclass(slots=True)
class Rewrite:
    """A span of one segment to replace, and with what kind of mask."""

    segment: int
    start: int
    end: int
    kind: str
    pseudonym: bool
    # Order of the scanner in its policy; an earlier one wins a tie.
    order: int = 0


@dataclass(slots=True)
class Rewriter:
    """Collects span rewrites over a list of segments and applies them."""

    segments: list[Segment]
    rewrites: list[Rewrite] = field(default_factory=list)

    def add(self, rewrite: Rewrite) -> None:
        self.rewrites.append(rewrite)

    def texts(self, vault: Vault | None, *, pseudonyms: bool) -> list[str]:
        """Return each segment's text with the spans replaced.

        With ``pseudonyms`` false every span becomes a fixed mask, which is
        the form stored in traces when a value was only flagged.
        """
        by_segment: dict[int, list[Rewrite]] = {}
        for rewrite in self.rewrites:
            by_segment.setdefault(rewrite.segment, []).append(rewrite)
        result = [segment.text for segment in self.segments]
        for index, spans in by_segment.items():
            text = self.segments[index].text
            kept = _without_overlaps(spans)
            parts: list[str] = []
            cursor = 0
            for span in kept:
                parts.append(text[cursor : span.start])
                value = text[span.start : span.end]
                if pseudonyms and span.pseudonym and vault is not None:
                    parts.append(vault.placeholder(span.kind, value))
                else:
                    parts.append(redaction(span.kind))
                cursor = span.end
            parts.append(text[cursor:])
            result[index] = "".join(parts)
        return result


def _without_overlaps(spans: list[Rewrite]) -> list[Rewrite]:
    """Merge overlapping spans into one that covers them all.

    Two scanners can find overlapping parts of one value (``alice.b`` and
    ``b@example.com``); masking only one of them would send the rest. The
    merged span takes the type of its longest part, and it is a pseudonym
    only when every part is.
    """
    merged: list[Rewrite] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        last = merged[-1] if merged else None
        if last is None or span.start >= last.end:
            merged.append(
                Rewrite(
                    span.segment,
                    span.start,
                    span.end,
                    span.kind,
                    span.pseudonym,
                    span.order,
                )
            )
            continue
        longest = last if last.end - last.start >= span.end - span.start else span
        last.kind = longest.kind
        last.order = min(last.order, span.order)
        last.pseudonym = last.pseudonym and span.pseudonym
        last.end = max(last.end, span.end)
    return merged


def with_texts(
    body: JSONObject, segments: list[Segment], texts: list[str]
) -> JSONObject:
    """Return a copy of ``body`` with each segment's text replaced."""
    changed = [
        (segment, text)
        for segment, text in zip(segments, texts, strict=True)
        if text != segment.text
    ]
    if not changed:
        return body
    result = copy.deepcopy(body)
    for segment, text in changed:
        target: Any = result
        for step in segment.path[:-1]:
            target = target[step]
        target[segment.path[-1]] = text
    return result
