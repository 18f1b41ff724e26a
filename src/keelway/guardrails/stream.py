"""Output guardrails on a streamed answer, through a sliding window.

Text is held back until the output scanners have seen it together with the
``stream_window`` characters that follow it, so a match shorter than the
window (a card number, an email address, the system prompt's canary) is
found before any of it is sent, even when it arrives split over several
chunks. When a blocking scanner triggers, the stream ends at once with
``finish_reason: content_filter``; what was held back is never sent.

Released text is masked where a ``redact`` scanner found something, and the
request's pseudonyms are put back, for the caller. The trace and the cache
keep another form: every sensitive span masked and the pseudonyms left in.
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keelway.guardrails.base import Finding, ScanContext
from keelway.guardrails.config import SPAN_ACTIONS
from keelway.guardrails.engine import (
    STOPPING_ACTIONS,
    GuardEngine,
    InputResult,
    Step,
    Verdict,
    mark_failed,
    new_verdict,
)
from keelway.guardrails.rewrite import PLACEHOLDER, redaction

if TYPE_CHECKING:
    from keelway.tracing.records import TraceRecord

JSONObject = dict[str, Any]
BufferKey = tuple[int, str, int]  # choice, "content" or "tool", tool-call index

# A placeholder cut off at the end of the released text: "<EMAIL_ADD".
_PARTIAL_PLACEHOLDER = re.compile(r"<[A-Z0-9_]{0,56}$")
# Scanners that judge the whole answer and need not run on every window.
_WHOLE_ANSWER = frozenset({"json_schema", "refusal", "topic", "language"})


@dataclass(slots=True)
class _Mask:
    start: int
    end: int
    kind: str
    # Whether the caller's copy is masked too, or only the stored one.
    delivered: bool


@dataclass(slots=True)
class _Buffer:
    text: str = ""
    released: int = 0
    masks: list[_Mask] = field(default_factory=list)
    # Fields of the first tool-call delta (id, type, name), sent with the
    # first released piece of its arguments.
    head: JSONObject | None = None
    # Tool-call arguments are JSON: restored values are escaped for it.
    json_string: bool = False


class StreamGuard:
    """Runs a policy's output scanners over a stream of chat chunks."""

    def __init__(
        self,
        engine: GuardEngine,
        inputs: InputResult,
        request: JSONObject | None = None,
    ) -> None:
        self.engine = engine
        self.inputs = inputs
        self.policy = inputs.policy
        self.request = request
        self.window = self.policy.stream_window
        self.step = max(16, self.window // 2)
        self.buffers: dict[BufferKey, _Buffer] = {}
        self.verdicts: dict[str, Verdict] = {
            step.label: new_verdict(self.policy, "output", step)
            for step in self.policy.output
        }
        self.blocked: Verdict | None = None
        self.finished: set[int] = set()
        # Choices ended by a blocking scanner.
        self.cut: set[int] = set()
        self.started = time.perf_counter()

    # -- feeding -----------------------------------------------------------

    def feed(self, data: JSONObject) -> list[JSONObject]:
        """Take one upstream chunk; return the chunks safe to send now."""
        if self.blocked is not None:
            return []
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            return [data]
        out_choices: list[JSONObject] = []
        ending: list[int] = []
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = int(choice.get("index") or 0)
            delta = choice.get("delta") or {}
            released = self._take(index, delta)
            if self.blocked is not None:
                return self._cut()
            finish = choice.get("finish_reason")
            if finish:
                released = self._merge(released, self._flush(index))
                if self.blocked is not None:
                    return self._cut()
                ending.append(index)
            new_delta = {
                k: v for k, v in delta.items() if k not in ("content", "tool_calls")
            }
            new_delta.update(released)
            if new_delta or finish or choice.get("logprobs"):
                out_choices.append({**choice, "delta": new_delta})
        self.finished.update(ending)
        if not out_choices and data.get("usage") is None:
            return []
        return [{**data, "choices": out_choices}]

    def finish(self) -> list[JSONObject]:
        """Release what is still held at the end of the stream."""
        if self.blocked is not None:
            return []
        pieces: list[JSONObject] = []
        for index in sorted({key[0] for key in self.buffers} - self.finished):
            released = self._flush(index)
            if self.blocked is not None:
                return self._cut()
            if released:
                pieces.append(
                    {
                        "object": "chat.completion.chunk",
                        "choices": [{"index": index, "delta": released}],
                    }
                )
        return pieces

    def _take(self, index: int, delta: JSONObject) -> JSONObject:
        released: JSONObject = {}
        content = delta.get("content")
        if isinstance(content, str) and content:
            buffer = self.buffers.setdefault((index, "content", 0), _Buffer())
            buffer.text += content
            piece = self._release(buffer, final=False)
            if piece:
                released["content"] = piece
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                if not isinstance(call, dict):
                    continue
                number = int(call.get("index") or 0)
                buffer = self.buffers.setdefault(
                    (index, "tool", number), _Buffer(json_string=True)
                )
                function = call.get("function") or {}
                head = {k: v for k, v in call.items() if k != "function"}
                name = function.get("name") if isinstance(function, dict) else None
                if name:
                    head["function"] = {"name": name}
                if buffer.head is None:
                    buffer.head = head
                arguments = (
                    function.get("arguments") if isinstance(function, dict) else None
                )
                if isinstance(arguments, str):
                    buffer.text += arguments
                piece = self._release(buffer, final=False)
                self._add_call(released, buffer, number, piece)
        return released

    @staticmethod
    def _add_call(
        released: JSONObject, buffer: _Buffer, number: int, piece: str
    ) -> None:
        if not piece and buffer.head is None:
            return
        call: JSONObject = {"index": number}
        if buffer.head is not None:
            call.update(buffer.head)
            buffer.head = None
        function = dict(call.get("function") or {})
        function["arguments"] = piece
        call["function"] = function
        released.setdefault("tool_calls", []).append(call)

    def _flush(self, index: int) -> JSONObject:
        released: JSONObject = {}
        for key, buffer in sorted(self.buffers.items()):
            if key[0] != index:
                continue
            piece = self._release(buffer, final=True)
            if self.blocked is not None:
                return {}
            if key[1] == "content":
                if piece:
                    released["content"] = piece
            else:
                self._add_call(released, buffer, key[2], piece)
        return released

    @staticmethod
    def _merge(first: JSONObject, second: JSONObject) -> JSONObject:
        merged = dict(first)
        if "content" in second:
            merged["content"] = merged.get("content", "") + second["content"]
        if "tool_calls" in second:
            merged["tool_calls"] = merged.get("tool_calls", []) + second["tool_calls"]
        return merged

    # -- scanning ----------------------------------------------------------

    def _release(self, buffer: _Buffer, *, final: bool) -> str:
        """Scan the held text and return the part that may be sent now."""
        pending = len(buffer.text) - buffer.released
        if not final and pending < self.window + self.step:
            return ""
        if final and pending <= 0 and buffer.released == len(buffer.text):
            return ""
        self._scan(buffer, final)
        if self.blocked is not None:
            return ""
        boundary = len(buffer.text) if final else len(buffer.text) - self.window
        boundary = self._safe_boundary(buffer, boundary, final)
        if boundary <= buffer.released:
            return ""
        piece = self._piece(buffer, buffer.released, boundary)
        buffer.released = boundary
        return piece

    def _scan(self, buffer: _Buffer, final: bool) -> None:
        region_start = max(0, buffer.released - self.window)
        region = buffer.text[region_start:]
        for step in self.policy.output:
            if step.kind in _WHOLE_ANSWER and not final:
                continue
            verdict = self.verdicts[step.label]
            started = time.perf_counter()
            whole = not step.spans
            text, offset = (buffer.text, 0) if whole else (region, region_start)
            context = ScanContext(
                source="output",
                request=self.request,
                system_prompt=self.inputs.system_prompt,
                canary=self.inputs.canary,
                final=final,
            )
            try:
                detection = step.scanner.scan(text, context)
                score = min(max(float(detection.score), 0.0), 1.0)
                if score != score:
                    raise ValueError("scanner returned a score that is not a number")
            except Exception as error:  # noqa: BLE001 - the setting decides
                verdict.elapsed_ms += (time.perf_counter() - started) * 1000
                if verdict.error is None:
                    mark_failed(verdict, step, error)
                if step.on_error == "closed" and step.action in STOPPING_ACTIONS:
                    self.blocked = verdict
                    return
                continue
            verdict.elapsed_ms += (time.perf_counter() - started) * 1000
            verdict.windows_skipped += detection.windows_skipped
            triggered = score > 0 and score >= step.threshold
            if score >= verdict.score:
                verdict.score = score
                verdict.reason = detection.reason or verdict.reason
            verdict.triggered = verdict.triggered or triggered
            self._note(buffer, step, detection.findings, offset, triggered)
            if triggered and step.action == "block":
                self.blocked = verdict
                return

    def _note(
        self,
        buffer: _Buffer,
        step: Step,
        findings: list[Finding],
        offset: int,
        triggered: bool,
    ) -> None:
        masks = triggered and step.action in SPAN_ACTIONS
        verdict = self.verdicts[step.label]
        for finding in findings:
            start, end = finding.start + offset, finding.end + offset
            if end <= buffer.released:
                continue  # seen in an earlier window
            verdict.findings.append(
                Finding(finding.kind, start, end, finding.score, finding.rule)
            )
            verdict.where.append("stream")
            if masks or step.sensitive:
                _add_mask(buffer.masks, _Mask(start, end, finding.kind, masks))

    def _safe_boundary(self, buffer: _Buffer, boundary: int, final: bool) -> int:
        """Move the boundary back so it cuts no masked span or placeholder."""
        if final:
            return boundary
        for mask in buffer.masks:
            if mask.start < boundary < mask.end:
                boundary = mask.start
        tail_start = max(buffer.released, boundary - 64)
        for match in PLACEHOLDER.finditer(buffer.text, tail_start):
            if match.start() < boundary < match.end():
                boundary = match.start()
        partial = _PARTIAL_PLACEHOLDER.search(buffer.text[tail_start:boundary])
        if partial is not None:
            boundary = tail_start + partial.start()
        return boundary

    def _piece(self, buffer: _Buffer, start: int, end: int) -> str:
        """Return text[start:end] as the caller gets it."""
        parts: list[str] = []
        cursor = start
        for mask in sorted(buffer.masks, key=lambda m: m.start):
            if not mask.delivered or mask.start < start or mask.end > end:
                continue
            if mask.start < cursor:
                continue
            parts.append(buffer.text[cursor : mask.start])
            parts.append(redaction(mask.kind))
            cursor = mask.end
        parts.append(buffer.text[cursor:end])
        return self.inputs.vault.restore("".join(parts), json_string=buffer.json_string)

    def _cut(self) -> list[JSONObject]:
        """End every open choice with ``content_filter``."""
        open_choices = sorted({key[0] for key in self.buffers} - self.finished) or [0]
        self.finished.update(open_choices)
        self.cut.update(open_choices)
        return [
            {
                "object": "chat.completion.chunk",
                "choices": [
                    {"index": index, "delta": {}, "finish_reason": "content_filter"}
                    for index in open_choices
                ],
            }
        ]

    # -- the end -----------------------------------------------------------

    def record(self, trace: TraceRecord | None) -> None:
        """Record the output verdicts on the trace and in the metrics."""
        verdicts = list(self.verdicts.values())
        for verdict in verdicts:
            if verdict.error is None:
                verdict.triggered = verdict.triggered and verdict.score > 0
        self.engine.record(trace, "output", self.policy, verdicts, self.started)

    def stored(self, completion: JSONObject) -> JSONObject:
        """Return the assembled answer as traces and caches may keep it.

        Every sensitive span found is masked, pseudonyms stay in, and a cut
        stream keeps only what was released before the cut.
        """
        result = copy.deepcopy(completion)
        for choice in result.get("choices") or ():
            index = int(choice.get("index") or 0)
            message = choice.get("message") or {}
            buffer = self.buffers.get((index, "content", 0))
            if buffer is not None:
                message["content"] = self._stored_text(buffer) or None
            for number, call in enumerate(message.get("tool_calls") or ()):
                buffer = self.buffers.get((index, "tool", number))
                if buffer is not None and isinstance(call.get("function"), dict):
                    call["function"]["arguments"] = self._stored_text(buffer)
            if index in self.cut:
                choice["finish_reason"] = "content_filter"
        return result

    def _stored_text(self, buffer: _Buffer) -> str:
        end = buffer.released if self.blocked is not None else len(buffer.text)
        parts: list[str] = []
        cursor = 0
        for mask in sorted(buffer.masks, key=lambda m: (m.start, -m.end)):
            if mask.start < cursor or mask.start >= end:
                continue
            parts.append(buffer.text[cursor : mask.start])
            parts.append(redaction(mask.kind))
            cursor = min(mask.end, end)
        parts.append(buffer.text[cursor:end])
        return self.inputs.mask_flagged("".join(parts))


def _add_mask(masks: list[_Mask], mask: _Mask) -> None:
    """Add a mask, merging it with every mask it overlaps.

    A later window can find more of a value than an earlier one did (the
    first digits of a card looked like a phone number); the union is masked,
    with the type of its longest part.
    """
    for other in [m for m in masks if m.start < mask.end and mask.start < m.end]:
        masks.remove(other)
        longer = other if other.end - other.start > mask.end - mask.start else mask
        mask = _Mask(
            min(other.start, mask.start),
            max(other.end, mask.end),
            longer.kind,
            other.delivered or mask.delivered,
        )
    masks.append(mask)
