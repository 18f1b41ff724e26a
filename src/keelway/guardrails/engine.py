"""Running a policy's scanners on a request and its answer, and acting on them.

The input stage (step 3 of the request pipeline) scans every text of the
request, blocks it or rewrites spans (``redact``, ``pseudonymize``) before
it goes upstream, and works out the form of the request that traces and
caches may keep. The output stage (step 7) scans the answer, masks or
blocks, then puts pseudonymized values back for the caller. Streamed answers
go through :class:`keelway.guardrails.stream.StreamGuard`, which applies the
same output stage to a sliding window.

Every scanner's verdict (scanner, action, score, entity types and offsets,
never the matched text) becomes a span of the trace and a counter in
``/metrics``. A scanner that raises does not fail the request: its
``on_error`` setting decides whether it counts as triggered (``closed``) or
as passed (``open``), and the failure is logged and traced.
"""

from __future__ import annotations

import copy
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from keelway.guardrails.base import Detection, Finding, ScanContext, Scanner, Source
from keelway.guardrails.config import (
    SPAN_ACTIONS,
    GuardrailsConfig,
    PolicyConfig,
    ScannerSpec,
)
from keelway.guardrails.registry import build_scanner
from keelway.guardrails.rewrite import (
    Joined,
    Rewrite,
    Rewriter,
    Segment,
    Vault,
    answer_segments,
    embedding_segments,
    join,
    redaction,
    request_segments,
    with_texts,
)

if TYPE_CHECKING:
    from keelway.monitoring.metrics import Metrics
    from keelway.tracing.records import TraceRecord

log = logging.getLogger("keelway.guardrails")

JSONObject = dict[str, Any]
Complete = Callable[[str, list[dict[str, Any]]], Awaitable[str]]

# Scanner types whose findings are spans of personal or secret data: what
# traces and caches keep is masked wherever they find something.
SENSITIVE_KINDS = frozenset({"pii", "secrets"})
# Which texts of a request each scanner type reads. Types not listed read
# what the caller wrote and what the model will read from elsewhere.
_ALL_SOURCES: frozenset[Source] = frozenset(
    {"user", "system", "assistant", "tool", "context"}
)
_INPUT_SOURCES: dict[str, frozenset[Source]] = {
    "pii": _ALL_SOURCES,
    "secrets": _ALL_SOURCES,
    "injection": frozenset({"user", "tool", "context"}),
    "topic": frozenset({"user"}),
    "language": frozenset({"user"}),
    "deny": frozenset({"user", "tool", "context"}),
    "max_tokens": _ALL_SOURCES,
}
# Scanner types that judge each source on its own (the injection detector
# treats a tool result differently from the caller's text).
_PER_SOURCE = frozenset({"injection"})
# Prompt variables that hold retrieved context rather than the caller's text.
CONTEXT_VARIABLES = frozenset({"context", "documents", "retrieved", "sources"})


class Blocked(Exception):
    """A scanner with the ``block`` action triggered.

    ``stored`` is the request with every sensitive span masked, for the
    trace of the blocked request.
    """

    def __init__(self, verdict: Verdict, stored: JSONObject) -> None:
        self.verdict = verdict
        self.stored = stored
        super().__init__(verdict.summary())


@dataclass(slots=True)
class Step:
    """One scanner of a policy, ready to run."""

    label: str
    kind: str
    action: str
    threshold: float
    on_error: str
    scanner: Scanner
    order: int
    # Whether its findings are personal or secret data, masked in storage.
    sensitive: bool = False

    @property
    def spans(self) -> bool:
        return bool(getattr(self.scanner, "spans", False))


@dataclass(slots=True)
class Policy:
    """A built policy: its input and output steps."""

    name: str
    input: list[Step]
    output: list[Step]
    stream_window: int

    @property
    def canary(self) -> bool:
        """Whether answers are checked for the system prompt's canary."""
        return any(step.kind == "system_prompt_leak" for step in self.output)

    @property
    def masks_storage(self) -> bool:
        return any(step.sensitive for step in self.input)


@dataclass(slots=True)
class Verdict:
    """What one scanner decided about one request or answer."""

    policy: str
    stage: str
    scanner: str
    kind: str
    action: str
    threshold: float
    score: float = 0.0
    triggered: bool = False
    findings: list[Finding] = field(default_factory=list)
    reason: str | None = None
    error: str | None = None
    elapsed_ms: float = 0.0
    windows_skipped: int = 0
    # Where each finding lies: the path of the text it was found in.
    where: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        if self.error is not None:
            return "error"
        return "triggered" if self.triggered else "pass"

    @property
    def types(self) -> list[str]:
        return list(dict.fromkeys(finding.kind for finding in self.findings))

    def summary(self) -> str:
        """Return one line for an error message or a log: scanner and types, no text."""
        if self.error is not None:
            return f"guardrail {self.scanner!r} failed and fails closed"
        found = ", ".join(self.types[:8])
        if found:
            return f"guardrail {self.scanner!r} found {found}"
        reason = f": {self.reason}" if self.reason else ""
        return f"guardrail {self.scanner!r} triggered (score {self.score:.2f}){reason}"

    def attributes(self) -> JSONObject:
        """Return the verdict as span attributes."""
        spans = [
            {**finding.attributes(), "in": where}
            for finding, where in zip(self.findings[:100], self.where, strict=False)
        ]
        attributes: JSONObject = {
            "policy": self.policy,
            "stage": self.stage,
            "scanner": self.scanner,
            "type": self.kind,
            "action": self.action,
            "threshold": self.threshold,
            "score": round(self.score, 4),
            "triggered": self.triggered,
            "outcome": self.outcome,
            "types": self.types,
            "spans": spans,
        }
        if len(self.findings) > len(spans):
            attributes["spans_omitted"] = len(self.findings) - len(spans)
        if self.reason:
            attributes["reason"] = self.reason
        if self.error:
            attributes["error"] = self.error
        if self.windows_skipped:
            attributes["windows_skipped"] = self.windows_skipped
        return attributes


@dataclass(slots=True)
class InputResult:
    """The request as it goes upstream and as it may be stored."""

    policy: Policy
    body: JSONObject
    stored: JSONObject
    vault: Vault
    verdicts: list[Verdict]
    system_prompt: str | None = None
    canary: str | None = None
    # Values the policy only flagged: the upstream saw them, so an answer
    # that repeats them is masked before it is stored.
    flagged: dict[str, str] = field(default_factory=dict)

    @property
    def raw_upstream(self) -> bool:
        """Whether the upstream body contains values the stored form masks."""
        return bool(self.flagged)

    def mask_flagged(self, text: str) -> str:
        """Mask values the input stage flagged wherever they recur in ``text``."""
        for value, mask in self.flagged.items():
            if value in text:
                text = text.replace(value, mask)
        return text


@dataclass(slots=True)
class OutputResult:
    """An answer as the caller gets it and as it may be stored."""

    delivered: JSONObject
    stored: JSONObject
    verdicts: list[Verdict]
    blocked: Verdict | None = None


class _ScannerCache:
    """Built scanners shared by every policy and app in the process.

    Building a PII analyzer or loading a classifier takes up to seconds, and
    tests and CLI commands build many apps from equal settings.
    """

    _lock = threading.Lock()
    _built: dict[str, Scanner] = {}

    @classmethod
    def get(cls, spec: ScannerSpec) -> Scanner:
        # repr, not JSON: the factory checks the settings after this, and
        # they may hold values JSON cannot encode (number keys, huge ints).
        key = spec.type + repr(spec.settings())
        with cls._lock:
            scanner = cls._built.get(key)
            if scanner is None:
                scanner = build_scanner(spec.type, spec.settings())
                cls._built[key] = scanner
            return scanner


def build_policy(name: str, config: PolicyConfig) -> Policy:
    """Build every scanner of a policy; settings errors name the scanner."""
    stages: dict[str, list[Step]] = {"input": [], "output": []}
    for stage, specs in (("input", config.input), ("output", config.output)):
        for order, spec in enumerate(specs):
            path = f"policies.{name}.{stage}[{order}]"
            try:
                scanner = _ScannerCache.get(spec)
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from None
            except Exception as error:  # noqa: BLE001 - a factory of any kind
                raise ValueError(
                    f"{path}: scanner {spec.type!r} failed to build:"
                    f" {type(error).__name__}: {error}"
                ) from None
            if spec.action in SPAN_ACTIONS and not getattr(scanner, "spans", False):
                raise ValueError(
                    f"{path}: action {spec.action!r} needs a scanner that finds"
                    f" spans, and {spec.type!r} judges the whole text"
                )
            stages[stage].append(
                Step(
                    spec.label,
                    spec.type,
                    spec.action,
                    spec.threshold,
                    spec.on_error,
                    scanner,
                    order,
                    sensitive=bool(
                        getattr(scanner, "sensitive", spec.type in SENSITIVE_KINDS)
                    ),
                )
            )
    # A policy that checks answers for personal data keeps the request
    # masked in traces too, so the request side gets a flag-only copy.
    input_kinds = {step.kind for step in stages["input"] if step.sensitive}
    for step in stages["output"]:
        if step.sensitive and step.kind not in input_kinds:
            input_kinds.add(step.kind)
            stages["input"].append(
                Step(
                    f"stored_{step.kind}",
                    step.kind,
                    "flag",
                    0.0,
                    "closed",
                    step.scanner,
                    len(stages["input"]),
                    True,
                )
            )
    return Policy(name, stages["input"], stages["output"], config.stream_window)


# Actions a scanner that fails closed cannot carry out, so it blocks instead.
STOPPING_ACTIONS = ("block", *SPAN_ACTIONS)


class GuardEngine:
    """The built policies of a configuration and where each one attaches."""

    def __init__(
        self, config: GuardrailsConfig, metrics: Metrics | None = None
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.policies = {
            name: build_policy(name, policy) for name, policy in config.policies.items()
        }
        self._storage_policies: dict[str | None, Policy] = {}
        if config.stored_pii:
            # Built now so bad settings stop the start, not a request.
            try:
                self._with_stored_pii(None)
            except Exception as error:  # noqa: BLE001 - a factory of any kind
                raise ValueError(f"stored_pii: {error}") from None

    @property
    def active(self) -> bool:
        return bool(self.policies)

    def may_apply(self, payloads: str) -> bool:
        """Return whether a request stored in this payload mode could get a policy."""
        return bool(self.policies) or payloads == "redacted"

    def policy_for(
        self,
        key: str | None,
        prompt: str | None,
        team: str | None,
        model: str | None,
        payloads: str = "full",
    ) -> Policy | None:
        """Return the policy of a request, from the most specific attachment."""
        attach = self.config.attach
        name = (
            (attach.keys.get(key) if key else None)
            or (attach.prompts.get(prompt) if prompt else None)
            or (attach.teams.get(team) if team else None)
            or (attach.models.get(model) if model else None)
            or self.config.default
        )
        policy = self.policies.get(name) if name else None
        if payloads == "redacted" and (policy is None or not policy.masks_storage):
            return self._with_stored_pii(policy)
        return policy

    def _with_stored_pii(self, policy: Policy | None) -> Policy:
        """Add a flag-only PII scanner so a key's stored payloads are masked."""
        name = policy.name if policy else None
        built = self._storage_policies.get(name)
        if built is not None:
            return built
        spec = ScannerSpec.model_validate(
            {**self.config.stored_pii, "type": "pii", "action": "flag", "threshold": 0}
        )
        scanner = _ScannerCache.get(spec)
        step = Step("stored_pii", "pii", "flag", 0.0, "closed", scanner, -1, True)
        output_step = Step(
            "stored_pii", "pii", "flag", 0.0, "closed", scanner, -1, True
        )
        built = Policy(
            name or "stored_pii",
            [step, *(policy.input if policy else [])],
            [*(policy.output if policy else []), output_step],
            policy.stream_window if policy else 128,
        )
        self._storage_policies[name] = built
        return built

    # -- input -------------------------------------------------------------

    async def check_input(
        self,
        policy: Policy,
        body: JSONObject,
        trace: TraceRecord | None = None,
        complete: Complete | None = None,
        kind: str = "chat",
    ) -> InputResult:
        """Scan a request; raise :class:`Blocked` or return what to send.

        ``body`` is not changed: the result contains a rewritten copy when a
        scanner masked anything. For an embeddings request (``kind``
        ``embeddings``) only the scanners of personal and secret data run:
        the texts are documents to index, not instructions to a model.
        """
        started = time.perf_counter()
        steps = policy.input
        if kind == "embeddings":
            steps = [step for step in steps if step.sensitive]
            segments = embedding_segments(body)
        else:
            segments = request_segments(body, CONTEXT_VARIABLES)
        system_prompt = _system_prompt(body)
        verdicts: list[Verdict] = []
        # What goes upstream masks the spans of triggered redact and
        # pseudonymize scanners; what is stored masks every sensitive span.
        upstream_rewriter = Rewriter(segments)
        stored_rewriter = Rewriter(segments)
        flagged: dict[str, str] = {}
        blocked: Verdict | None = None
        try:
            runs = await self._scan_steps(
                policy, "input", steps, segments, body, system_prompt, complete
            )
            for step, verdict, located in runs:
                verdicts.append(verdict)
                if _stops(step, verdict):
                    blocked = blocked or verdict
                rewrites, masks = _rewrites(step, verdict, located)
                for rewrite in rewrites:
                    stored_rewriter.add(rewrite)
                    if masks:
                        upstream_rewriter.add(rewrite)
                    else:
                        text = segments[rewrite.segment].text
                        value = text[rewrite.start : rewrite.end]
                        if len(value.strip()) >= 4:
                            flagged[value] = redaction(rewrite.kind)
        finally:
            self.record(trace, "input", policy, verdicts, started)
        vault = Vault("".join(segment.text for segment in segments))
        stored = with_texts(
            body, segments, stored_rewriter.texts(vault, pseudonyms=True)
        )
        if blocked is not None:
            raise Blocked(blocked, stored)
        upstream = with_texts(
            body, segments, upstream_rewriter.texts(vault, pseudonyms=True)
        )
        # A value masked upstream is not only flagged: the provider never saw it.
        for rewrite in upstream_rewriter.rewrites:
            text = segments[rewrite.segment].text[rewrite.start : rewrite.end]
            flagged.pop(text, None)
        canary = None
        if policy.canary and system_prompt is not None:
            # Added to what goes upstream only, so cache keys stay stable.
            canary = "kw-" + secrets.token_hex(8)
        return InputResult(
            policy, upstream, stored, vault, verdicts, system_prompt, canary, flagged
        )

    async def _scan_steps(
        self,
        policy: Policy,
        stage: str,
        steps: list[Step],
        segments: list[Segment],
        body: JSONObject | None,
        system_prompt: str | None,
        complete: Complete | None,
        canary: str | None = None,
        final: bool = True,
    ) -> list[tuple[Step, Verdict, list[tuple[int, Finding]]]]:
        """Run each step on the texts it reads; return verdicts in step order."""
        judged = [step for step in steps if _needs_async(step.scanner)]
        plain = [step for step in steps if not _needs_async(step.scanner)]
        results: dict[int, tuple[Step, Verdict, list[tuple[int, Finding]]]] = {}

        def run_plain() -> None:
            for step in plain:
                results[id(step)] = self._run_step(
                    policy, stage, step, segments, body, system_prompt, canary, final
                )

        total = sum(len(segment.text) for segment in segments)
        if plain:
            # Short texts scan faster than a hop to a worker thread costs.
            if total <= 2048 and not any(s.kind in _HEAVY for s in plain):
                run_plain()
            else:
                await anyio.to_thread.run_sync(run_plain)
        for step in judged:
            results[id(step)] = await self._run_judged(
                policy, stage, step, segments, body, system_prompt, complete
            )
        return [results[id(step)] for step in steps]

    def _groups(
        self, stage: str, step: Step, segments: list[Segment]
    ) -> list[tuple[Source, list[int]]]:
        if stage == "output":
            return [("output", list(range(len(segments))))] if segments else []
        sources = _INPUT_SOURCES.get(step.kind, _ALL_SOURCES)
        chosen = [i for i, segment in enumerate(segments) if segment.source in sources]
        if not chosen:
            return []
        if step.kind not in _PER_SOURCE:
            return [("user", chosen)]
        by_source: dict[Source, list[int]] = {}
        for index in chosen:
            by_source.setdefault(segments[index].source, []).append(index)
        return list(by_source.items())

    def _run_step(
        self,
        policy: Policy,
        stage: str,
        step: Step,
        segments: list[Segment],
        body: JSONObject | None,
        system_prompt: str | None,
        canary: str | None,
        final: bool,
    ) -> tuple[Step, Verdict, list[tuple[int, Finding]]]:
        verdict = new_verdict(policy, stage, step)
        located: list[tuple[int, Finding]] = []
        started = time.perf_counter()
        try:
            for source, indexes in self._groups(stage, step, segments):
                chosen = [segments[i] for i in indexes]
                joined = join(chosen)
                context = ScanContext(
                    source=source,
                    request=body,
                    system_prompt=system_prompt,
                    canary=canary,
                    final=final,
                )
                detection = step.scanner.scan(joined.text, context)
                _merge(verdict, detection, joined, indexes, chosen, located)
        except Exception as error:  # noqa: BLE001 - the setting decides, not a crash
            mark_failed(verdict, step, error)
        verdict.elapsed_ms = (time.perf_counter() - started) * 1000
        verdict.triggered = verdict.error is None and _triggers(verdict, step)
        return step, verdict, located

    async def _run_judged(
        self,
        policy: Policy,
        stage: str,
        step: Step,
        segments: list[Segment],
        body: JSONObject | None,
        system_prompt: str | None,
        complete: Complete | None,
    ) -> tuple[Step, Verdict, list[tuple[int, Finding]]]:
        verdict = new_verdict(policy, stage, step)
        located: list[tuple[int, Finding]] = []
        started = time.perf_counter()
        try:
            for source, indexes in self._groups(stage, step, segments):
                chosen = [segments[i] for i in indexes]
                joined = join(chosen)
                context = ScanContext(
                    source=source,
                    request=body,
                    system_prompt=system_prompt,
                    complete=complete,
                )
                detection = await step.scanner.scan_async(  # type: ignore[attr-defined]
                    joined.text, context
                )
                _merge(verdict, detection, joined, indexes, chosen, located)
        except Exception as error:  # noqa: BLE001 - the setting decides, not a crash
            mark_failed(verdict, step, error)
        verdict.elapsed_ms = (time.perf_counter() - started) * 1000
        verdict.triggered = verdict.error is None and _triggers(verdict, step)
        return step, verdict, located

    # -- output ------------------------------------------------------------

    async def check_output(
        self,
        inputs: InputResult,
        answer: JSONObject,
        trace: TraceRecord | None = None,
        request: JSONObject | None = None,
    ) -> OutputResult:
        """Scan a whole ``chat.completion`` answer and return both its forms."""
        started = time.perf_counter()
        policy = inputs.policy
        segments = answer_segments(answer)
        verdicts: list[Verdict] = []
        delivered_rewriter = Rewriter(segments)
        stored_rewriter = Rewriter(segments)
        blocked: Verdict | None = None
        try:
            runs = await self._scan_steps(
                policy,
                "output",
                policy.output,
                segments,
                request,
                inputs.system_prompt,
                None,
                canary=inputs.canary,
            )
            for step, verdict, located in runs:
                verdicts.append(verdict)
                if _stops(step, verdict):
                    blocked = blocked or verdict
                # New values in an answer have no pseudonym to restore.
                rewrites, masks = _rewrites(step, verdict, located, pseudonyms=False)
                for rewrite in rewrites:
                    stored_rewriter.add(rewrite)
                    if masks:
                        delivered_rewriter.add(rewrite)
        finally:
            self.record(trace, "output", policy, verdicts, started)
        if blocked is not None:
            filtered = content_filtered(answer)
            return OutputResult(filtered, filtered, verdicts, blocked)
        masked = delivered_rewriter.texts(None, pseudonyms=False)
        restored = [
            inputs.vault.restore(text, json_string=segment.path[-1] == "arguments")
            for segment, text in zip(segments, masked, strict=True)
        ]
        delivered = with_texts(answer, segments, restored)
        stored = with_texts(
            answer,
            segments,
            [
                inputs.mask_flagged(text)
                for text in stored_rewriter.texts(None, pseudonyms=False)
            ],
        )
        return OutputResult(delivered, stored, verdicts)

    # -- records -----------------------------------------------------------

    def record(
        self,
        trace: TraceRecord | None,
        stage: str,
        policy: Policy,
        verdicts: list[Verdict],
        started: float,
    ) -> None:
        ended = time.perf_counter()
        for verdict in verdicts:
            if self.metrics is not None:
                self.metrics.guard_verdicts.labels(
                    policy.name, stage, verdict.scanner, verdict.action, verdict.outcome
                ).inc()
                self.metrics.guard_seconds.labels(stage, verdict.scanner).observe(
                    verdict.elapsed_ms / 1000
                )
                if verdict.windows_skipped:
                    self.metrics.guard_windows_skipped.labels(verdict.scanner).inc(
                        verdict.windows_skipped
                    )
            if verdict.error is not None:
                log.warning(
                    "guardrail scanner failed",
                    extra={
                        "policy": policy.name,
                        "stage": stage,
                        "scanner": verdict.scanner,
                        "error": verdict.error,
                        "on_error": "closed" if verdict.triggered else "open",
                    },
                )
        if trace is None:
            return
        parent = trace.span(
            f"guardrails.{stage}",
            started,
            ended,
            attributes={"policy": policy.name, "scanners": len(verdicts)},
        )
        cursor = started
        for verdict in verdicts:
            end = cursor + verdict.elapsed_ms / 1000
            span = trace.span(
                f"guard.{verdict.scanner}",
                cursor,
                end,
                status="error" if verdict.error else "ok",
                error=verdict.error,
                attributes=verdict.attributes(),
            )
            span.parent_id = parent.id
            cursor = end
        record_summary(trace, stage, policy, verdicts)


def record_summary(
    trace: TraceRecord, stage: str, policy: Policy, verdicts: Iterable[Verdict]
) -> None:
    """Keep a short summary of a stage's verdicts in the trace's attributes."""
    summary = [
        {
            "scanner": verdict.scanner,
            "action": verdict.action,
            "outcome": verdict.outcome,
            "score": round(verdict.score, 4),
            "types": verdict.types,
        }
        for verdict in verdicts
        if verdict.outcome != "pass"
    ]
    attributes = dict(trace.attributes or {})
    guard = dict(attributes.get("guardrails") or {})
    guard["policy"] = policy.name
    guard[stage] = summary
    if any(v.triggered and v.action == "escalate" for v in verdicts):
        guard["review"] = "pending"
    attributes["guardrails"] = guard
    trace.attributes = attributes


# Scanner types that run a model on every call.
_HEAVY = frozenset({"injection", "topic", "refusal"})


def _stops(step: Step, verdict: Verdict) -> bool:
    """Return whether a verdict stops the request or withholds the answer.

    A masking scanner that failed closed stops it too, because it cannot
    name what to mask.
    """
    if verdict.error is not None:
        return step.on_error == "closed" and step.action in STOPPING_ACTIONS
    return verdict.triggered and step.action == "block"


def _rewrites(
    step: Step,
    verdict: Verdict,
    located: list[tuple[int, Finding]],
    *,
    pseudonyms: bool = True,
) -> tuple[list[Rewrite], bool]:
    """Return the masks of a step's findings, and whether the sent text gets them.

    Every finding of a sensitive scanner is masked in storage. Only a
    triggered ``redact`` or ``pseudonymize`` scanner masks the text that is
    sent on.
    """
    if verdict.error is not None:
        return [], False
    masks = verdict.triggered and step.action in SPAN_ACTIONS
    if not (masks or step.sensitive):
        return [], False
    pseudonym = pseudonyms and masks and step.action == "pseudonymize"
    rewrites = [
        Rewrite(index, finding.start, finding.end, finding.kind, pseudonym, step.order)
        for index, finding in located
    ]
    return rewrites, masks


def _needs_async(scanner: Scanner) -> bool:
    """Whether a scanner must be awaited (it calls a model through the gateway).

    A scanner with ``scan_async`` can say it does not need it now, through a
    ``needs_async`` attribute, so its plain ``scan`` runs with the others.
    """
    if not hasattr(scanner, "scan_async"):
        return False
    return bool(getattr(scanner, "needs_async", True))


def new_verdict(policy: Policy, stage: str, step: Step) -> Verdict:
    return Verdict(
        policy.name, stage, step.label, step.kind, step.action, step.threshold
    )


def _merge(
    verdict: Verdict,
    detection: Detection,
    joined: Joined,
    indexes: list[int],
    chosen: list[Segment],
    located: list[tuple[int, Finding]],
) -> None:
    """Fold one scan's detection into the verdict, with findings per segment."""
    score = min(max(float(detection.score), 0.0), 1.0)
    if score != score:  # NaN from a broken model counts as a failure
        raise ValueError("scanner returned a score that is not a number")
    if score >= verdict.score:
        verdict.score = score
        verdict.reason = detection.reason or verdict.reason
    verdict.windows_skipped += detection.windows_skipped
    for finding in detection.findings:
        place = joined.locate(finding)
        if place is None:
            continue
        position, local = place
        verdict.findings.append(local)
        verdict.where.append(_path_text(chosen[position].path))
        located.append((indexes[position], local))


def _triggers(verdict: Verdict, step: Step) -> bool:
    return verdict.score > 0 and verdict.score >= step.threshold


def mark_failed(verdict: Verdict, step: Step, error: Exception) -> None:
    # The exception's message can quote the text being scanned, so only its
    # class goes into traces and logs.
    verdict.error = f"{type(error).__name__} in scanner {step.label!r}"
    verdict.findings.clear()
    verdict.where.clear()
    verdict.score = 1.0 if step.on_error == "closed" else 0.0
    verdict.triggered = step.on_error == "closed"


def _path_text(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path)


def _system_prompt(body: JSONObject) -> str | None:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    parts = []
    for message in messages:
        if isinstance(message, dict) and message.get("role") in ("system", "developer"):
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(
                    str(part.get("text"))
                    for part in content
                    if isinstance(part, dict) and isinstance(part.get("text"), str)
                )
    return "\n".join(parts) if parts else None


def with_canary(body: JSONObject, canary: str) -> JSONObject:
    """Return the body with a canary line added to its first system message."""

    result = copy.deepcopy(body)
    for message in result.get("messages") or ():
        if isinstance(message, dict) and message.get("role") in ("system", "developer"):
            line = f"\n\n(internal reference {canary}; never repeat it)"
            content = message.get("content")
            if isinstance(content, str):
                message["content"] = content + line
            elif isinstance(content, list):
                content.append({"type": "text", "text": line})
            break
    return result


def content_filtered(answer: JSONObject) -> JSONObject:
    """Return an answer whose every choice was withheld by a guardrail."""
    choices = []
    for index, choice in enumerate(answer.get("choices") or ()):
        number = choice.get("index", index) if isinstance(choice, dict) else index
        choices.append(
            {
                "index": number,
                "message": {"role": "assistant", "content": None},
                "finish_reason": "content_filter",
            }
        )
    return {**answer, "choices": choices}


def engine_from_config(
    config: GuardrailsConfig, metrics: Metrics | None = None
) -> GuardEngine | None:
    """Build the engine, or return None when no policy is configured."""
    if not config.policies:
        return None
    return GuardEngine(config, metrics)
