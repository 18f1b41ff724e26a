"""What every scanner shares: findings, detections and the scanner protocol.

A scanner looks at one piece of text and returns a :class:`Detection`: a
score in [0, 1], the spans it found (entity type, offsets, score, never the
matched value) and a one-line reason. The engine compares the score with the
scanner's threshold and applies the scanner's action. Scanners never see the
action: they only detect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Source = Literal["user", "system", "assistant", "tool", "context", "output"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One span a scanner matched: its type, its offsets and a score.

    ``kind`` is the entity type (``EMAIL_ADDRESS``, ``AWS_ACCESS_KEY``,
    ``INSTRUCTION_OVERRIDE`` ...). ``rule`` names the recognizer or rule that
    matched. The matched text itself is never part of a finding, so findings
    can be traced and logged as they are.
    """

    kind: str
    start: int
    end: int
    score: float = 1.0
    rule: str | None = None

    def attributes(self) -> dict[str, Any]:
        """Return the finding as trace attributes."""
        return {
            "type": self.kind,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 4),
        }


@dataclass(slots=True)
class Detection:
    """What one scanner found in one text.

    ``score`` is the scanner's confidence that the text breaks its rule, in
    [0, 1]; 0 means nothing was found. ``findings`` are the spans behind the
    score (empty for whole-text verdicts such as a topic or a language).
    ``reason`` says in one line, without quoting the text, why the score is
    what it is. ``windows_skipped`` counts windows of a long text that were
    not scanned (0 unless a scanner's length limit was reached).
    """

    score: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    windows_skipped: int = 0

    @property
    def kinds(self) -> list[str]:
        """Return the distinct entity types found, in order of appearance."""
        return list(dict.fromkeys(finding.kind for finding in self.findings))


NOTHING = Detection()


@dataclass(frozen=True, slots=True)
class ScanContext:
    """What a scanner may know about the text besides the text itself.

    ``source`` is where the text comes from: the caller (``user``), the
    system prompt, an earlier assistant turn, a tool result, retrieved
    context or the model's answer (``output``). ``request`` is the request
    body as the gateway received it, for scanners that read settings from it
    (a response format's JSON Schema). ``system_prompt`` is the request's
    system prompt text, for leak detection on the answer. ``final`` is false
    while a streamed answer is still arriving, so scanners that need the
    whole answer (JSON Schema, refusal) can wait. ``complete`` sends a chat
    request through the gateway (model group, messages) and returns the
    answer's text, for scanners with an LLM-judge mode; it is None where no
    gateway is at hand (``keelway guard scan`` without ``--gateway``).
    """

    source: Source = "user"
    request: dict[str, Any] | None = None
    system_prompt: str | None = None
    canary: str | None = None
    final: bool = True
    complete: Callable[[str, list[dict[str, Any]]], Awaitable[str]] | None = None


class Scanner(Protocol):
    """A detector for one kind of risk.

    ``scan`` is synchronous and CPU-bound; the engine runs it in a worker
    thread when the text is long. A scanner that must call a model (an
    LLM-judge mode) also defines ``async def scan_async(text, context)``,
    which the engine awaits instead of ``scan``. A scanner raises on failure;
    the engine applies the scanner's ``on_error`` setting.
    """

    # The scanner's type as written in a policy (``pii``, ``secrets`` ...).
    kind: str
    # Whether findings are spans that can be redacted or pseudonymized.
    spans: bool

    def scan(self, text: str, context: ScanContext) -> Detection:
        """Return what the scanner found in ``text``."""
        ...


class ScannerConfigError(ValueError):
    """A scanner's settings in a policy are invalid."""
