"""Scanners for tests, loaded through the ``custom`` scanner type.

``build_needle`` finds every occurrence of a word (a stand-in for any span
scanner whose matches are known in advance); ``build_failing`` raises on
every call, with the scanned text in its message, so tests can check that
a failure neither crashes a request nor leaks the text.
"""

from __future__ import annotations

from typing import Any

from keelway.guardrails.base import Detection, Finding, ScanContext


class Needle:
    kind = "custom"
    spans = True

    def __init__(self, word: str, kind: str) -> None:
        self.word = word
        self.entity = kind

    def scan(self, text: str, context: ScanContext) -> Detection:
        findings = []
        start = text.find(self.word)
        while start >= 0:
            findings.append(Finding(self.entity, start, start + len(self.word)))
            start = text.find(self.word, start + 1)
        score = 1.0 if findings else 0.0
        return Detection(score, findings, f"found {len(findings)}")


class Failing:
    kind = "custom"
    spans = False

    def scan(self, text: str, context: ScanContext) -> Detection:
        raise RuntimeError(f"scanner broke on {text!r}")


def build_needle(settings: dict[str, Any]) -> Needle:
    return Needle(str(settings["word"]), str(settings.get("entity", "NEEDLE")))


def build_failing(settings: dict[str, Any]) -> Failing:
    return Failing()
