"""Precision, recall and F1 of scanners on a labelled JSONL file.

Two line shapes are read:

* span sets, for scanners that find spans (``pii``, ``secrets``, ``deny``)::

    {"id": "a1", "text": "...", "entities": [{"type": "EMAIL_ADDRESS",
     "start": 8, "end": 25, "value": "..."}], "scanner": "pii"}

  A predicted span counts as correct when it overlaps a gold span of the same
  type, and a gold span counts as found when a predicted span of its type
  overlaps it. Precision is the share of correct predictions, recall the
  share of found gold spans. The ``any type`` row matches spans whatever
  their types, which separates "found the right place" from "named it right".

* label sets, for classifiers (``injection``, ``topic``, ``language``)::

    {"id": "b7", "text": "...", "label": 1, "technique": "role_play",
     "source": "handwritten"}

  A text is predicted positive when the scanner's score reaches the
  threshold. Besides precision, recall and F1 the report gives the false
  positive rate on label 0 and recall and false positive rate per
  ``technique`` and per ``source``.

A line's scanner is its ``scanner`` field, else the caller's default, else
``injection`` for label sets and ``pii`` for span sets. Lines may also carry
``system_prompt``, ``canary`` and ``request`` for scanners that read them
from the scan context.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from keelway.guardrails.base import Finding, ScanContext, Scanner

ANY_TYPE = "any type"


class DatasetError(ValueError):
    """A labelled file cannot be read; the message names the line."""


@dataclass(frozen=True, slots=True)
class Entity:
    """A gold span of a span set."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Example:
    """One line of a labelled file."""

    line: int
    id: str
    text: str
    scanner: str
    shape: Literal["spans", "labels"]
    entities: tuple[Entity, ...] = ()
    label: int | None = None
    technique: str | None = None
    source: str | None = None
    context: ScanContext = field(default_factory=ScanContext)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    """Return the harmonic mean, 0 when either side is 0, None when unknown."""
    if precision == 0 or recall == 0:
        return 0.0
    if precision is None or recall is None:
        return None
    return 2 * precision * recall / (precision + recall)


@dataclass(slots=True)
class SpanCounts:
    """Overlap counts of one scanner, or one entity type of it."""

    predicted: int = 0
    correct: int = 0
    gold: int = 0
    found: int = 0

    def as_dict(self) -> dict[str, Any]:
        precision = _ratio(self.correct, self.predicted)
        recall = _ratio(self.found, self.gold)
        return {
            "predicted": self.predicted,
            "correct": self.correct,
            "gold": self.gold,
            "found": self.found,
            "precision": precision,
            "recall": recall,
            "f1": _f1(precision, recall),
        }


@dataclass(slots=True)
class LabelCounts:
    """Confusion counts of one classifier, or one technique or source."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, label: int, predicted: bool) -> None:
        if label == 1:
            if predicted:
                self.tp += 1
            else:
                self.fn += 1
        elif predicted:
            self.fp += 1
        else:
            self.tn += 1

    def as_dict(self) -> dict[str, Any]:
        precision = _ratio(self.tp, self.tp + self.fp)
        recall = _ratio(self.tp, self.tp + self.fn)
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "precision": precision,
            "recall": recall,
            "f1": _f1(precision, recall),
            "fpr": _ratio(self.fp, self.fp + self.tn),
        }


@dataclass(slots=True)
class ScannerReport:
    """The figures of one scanner on its lines of the file."""

    scanner: str
    shape: Literal["spans", "labels"]
    threshold: float
    size: int = 0
    errors: int = 0
    overall: SpanCounts | LabelCounts = field(default_factory=SpanCounts)
    any_type: SpanCounts = field(default_factory=SpanCounts)
    by_type: dict[str, SpanCounts] = field(default_factory=dict)
    by_technique: dict[str, LabelCounts] = field(default_factory=dict)
    by_source: dict[str, LabelCounts] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "scanner": self.scanner,
            "shape": self.shape,
            "threshold": self.threshold,
            "size": self.size,
            "errors": self.errors,
            "overall": self.overall.as_dict(),
        }
        if self.shape == "spans":
            report["any_type"] = self.any_type.as_dict()
            report["by_type"] = {
                kind: counts.as_dict() for kind, counts in sorted(self.by_type.items())
            }
        else:
            report["by_technique"] = {
                name: counts.as_dict()
                for name, counts in sorted(self.by_technique.items())
            }
            report["by_source"] = {
                name: counts.as_dict()
                for name, counts in sorted(self.by_source.items())
            }
        return report


def read_examples(path: Path, default_scanner: str | None = None) -> list[Example]:
    """Read a labelled JSONL file, raising DatasetError naming a bad line."""
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read: {error}") from None
    records = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as error:
            raise DatasetError(
                f"{path}, line {number}: invalid JSON: {error.msg}"
            ) from None
    if default_scanner is None:
        default_scanner = _span_scanner(record for _, record in records)
    examples = [
        _example(path, number, record, default_scanner) for number, record in records
    ]
    if not examples:
        raise DatasetError(f"{path}: the file has no examples")
    return examples


def _span_scanner(records: Any) -> str | None:
    """Return ``secrets`` for a span set whose types are all secret types.

    Lines without a ``scanner`` field are otherwise taken as PII, and the
    negatives of a secrets set have no entity to tell them apart.
    """
    from keelway.guardrails.secrets import TYPES

    kinds = {
        entity.get("type")
        for record in records
        if isinstance(record, dict) and isinstance(record.get("entities"), list)
        for entity in record["entities"]
        if isinstance(entity, dict)
    }
    if kinds and kinds <= set(TYPES):
        return "secrets"
    return None


def _example(
    path: Path, number: int, record: Any, default_scanner: str | None
) -> Example:
    where = f"{path}, line {number}"
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object")

    text = record.get("text")
    if not isinstance(text, str):
        raise DatasetError(f"{where}: text must be a string")
    has_entities = "entities" in record
    has_label = "label" in record
    if has_entities == has_label:
        raise DatasetError(f"{where}: needs either entities or label, not both")
    scanner = record.get("scanner", default_scanner)
    if scanner is None:
        scanner = "pii" if has_entities else "injection"
    if not isinstance(scanner, str) or not scanner:
        raise DatasetError(f"{where}: scanner must be a scanner type")
    context = _context(where, record)
    example_id = str(record.get("id", number))

    if has_label:
        label = record["label"]
        if label not in (0, 1) or isinstance(label, bool):
            raise DatasetError(f"{where}: label must be 0 or 1")
        return Example(
            number,
            example_id,
            text,
            scanner,
            "labels",
            label=label,
            technique=_optional_name(where, record, "technique"),
            source=_optional_name(where, record, "source"),
            context=context,
        )

    entities = record["entities"]
    if not isinstance(entities, list):
        raise DatasetError(f"{where}: entities must be a list")
    gold = []
    for index, entity in enumerate(entities):
        gold.append(_entity(f"{where}, entities[{index}]", entity, len(text)))
    return Example(
        number, example_id, text, scanner, "spans", tuple(gold), context=context
    )


def _entity(where: str, entity: Any, length: int) -> Entity:
    if not isinstance(entity, dict):
        raise DatasetError(f"{where}: expected a JSON object")
    kind, start, end = entity.get("type"), entity.get("start"), entity.get("end")
    if not isinstance(kind, str) or not kind:
        raise DatasetError(f"{where}: type must be a non-empty string")
    if not all(
        isinstance(value, int) and not isinstance(value, bool) for value in (start, end)
    ):
        raise DatasetError(f"{where}: start and end must be integers")
    assert isinstance(start, int) and isinstance(end, int)
    if not 0 <= start < end <= length:
        raise DatasetError(
            f"{where}: span {start}..{end} is outside the text of {length} characters"
        )
    return Entity(kind, start, end)


def _optional_name(where: str, record: dict[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DatasetError(f"{where}: {name} must be a string")
    return value


def _context(where: str, record: dict[str, Any]) -> ScanContext:
    system_prompt = record.get("system_prompt")
    canary = record.get("canary")
    request = record.get("request")
    for name, value in (("system_prompt", system_prompt), ("canary", canary)):
        if value is not None and not isinstance(value, str):
            raise DatasetError(f"{where}: {name} must be a string")
    if request is not None and not isinstance(request, dict):
        raise DatasetError(f"{where}: request must be a JSON object")
    return ScanContext(system_prompt=system_prompt, canary=canary, request=request)


def _overlaps(a: Finding | Entity, b: Finding | Entity) -> bool:
    return a.start < b.end and b.start < a.end


def evaluate(
    examples: Iterable[Example],
    scanners: dict[str, tuple[Scanner, float, ScanContext]],
    progress: Callable[[int], None] | None = None,
) -> list[ScannerReport]:
    """Run each example's scanner and return one report per scanner.

    ``scanners`` maps a scanner type to the scanner, its threshold and the
    base context of its stage (input or output). A scanner that raises on a
    line counts that line in ``errors`` and as predicting nothing, the way a
    fail-open policy would behave.
    """
    reports: dict[str, ScannerReport] = {}
    for done, example in enumerate(examples, start=1):
        scanner, threshold, base = scanners[example.scanner]
        report = reports.get(example.scanner)
        if report is None:
            report = ScannerReport(example.scanner, example.shape, threshold)
            if example.shape == "labels":
                report.overall = LabelCounts()
            reports[example.scanner] = report
        if report.shape != example.shape:
            raise DatasetError(
                f"line {example.line}: scanner {example.scanner!r} has both span"
                " and label lines; put them in separate files"
            )
        context = ScanContext(
            source=base.source,
            request=example.context.request,
            system_prompt=example.context.system_prompt,
            canary=example.context.canary,
        )
        report.size += 1
        try:
            detection = scanner.scan(example.text, context)
        except Exception:  # noqa: BLE001 - any scanner failure is counted, not fatal
            report.errors += 1
            detection = None
        if example.shape == "labels":
            assert isinstance(report.overall, LabelCounts)
            assert example.label is not None
            predicted = detection is not None and detection.score >= threshold
            report.overall.add(example.label, predicted)
            technique = example.technique or "(none)"
            source = example.source or "(none)"
            report.by_technique.setdefault(technique, LabelCounts()).add(
                example.label, predicted
            )
            report.by_source.setdefault(source, LabelCounts()).add(
                example.label, predicted
            )
        else:
            findings = [] if detection is None else detection.findings
            predicted_spans = [f for f in findings if f.score >= threshold]
            _count_spans(report, predicted_spans, list(example.entities))
        if progress is not None:
            progress(done)
    return list(reports.values())


def _count_spans(
    report: ScannerReport, predicted: list[Finding], gold: list[Entity]
) -> None:
    assert isinstance(report.overall, SpanCounts)
    overall, any_type = report.overall, report.any_type
    for finding in predicted:
        typed = report.by_type.setdefault(finding.kind, SpanCounts())
        same_type = any(
            entity.kind == finding.kind and _overlaps(finding, entity)
            for entity in gold
        )
        for counts, hit in ((overall, same_type), (typed, same_type)):
            counts.predicted += 1
            counts.correct += hit
        any_type.predicted += 1
        any_type.correct += any(_overlaps(finding, entity) for entity in gold)
    for entity in gold:
        typed = report.by_type.setdefault(entity.kind, SpanCounts())
        same_type = any(
            finding.kind == entity.kind and _overlaps(finding, entity)
            for finding in predicted
        )
        for counts, hit in ((overall, same_type), (typed, same_type)):
            counts.gold += 1
            counts.found += hit
        any_type.gold += 1
        any_type.found += any(_overlaps(finding, entity) for finding in predicted)
