"""Tests of the PII scanner: spans, overlaps, look-alikes, windows and settings.

The labelled set ``src/keelway/guardrails/data/pii.jsonl`` is checked for
well-formed spans and scored span-wise: a predicted span is a true positive
when it overlaps a gold span of the same type.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from keelway.guardrails.base import Detection, ScanContext, ScannerConfigError
from keelway.guardrails.pii import (
    DEFAULT_ENTITIES,
    MIN_WINDOW,
    WINDOW_MARGIN,
    PIIScanner,
    windows,
)
from keelway.guardrails.registry import build_scanner

DATA = (
    Path(__file__).resolve().parents[1]
    / "src"
    / "keelway"
    / "guardrails"
    / "data"
    / "pii.jsonl"
)
CONTEXT = ScanContext()


@pytest.fixture(scope="module")
def scanner() -> PIIScanner:
    built = build_scanner("pii", {})
    assert isinstance(built, PIIScanner)
    return built


def found(scanner: PIIScanner, text: str) -> list[tuple[str, str]]:
    """Return (type, matched text) for each finding, in order."""
    detection = scanner.scan(text, CONTEXT)
    return [(f.kind, text[f.start : f.end]) for f in detection.findings]


def luhn_number(prefix: str, length: int, rng: random.Random) -> str:
    """Return a Luhn-valid number of ``length`` digits starting with ``prefix``."""
    body = prefix + "".join(
        rng.choice("0123456789") for _ in range(length - 1 - len(prefix))
    )
    for check in "0123456789":
        digits = body + check
        total = 0
        for index, char in enumerate(reversed(digits)):
            value = int(char) * (2 if index % 2 else 1)
            total += value - 9 if value > 9 else value
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable: one check digit always fits")


def grouped(digits: str, sizes: list[int], separator: str) -> str:
    parts, index = [], 0
    for size in sizes:
        parts.append(digits[index : index + size])
        index += size
    assert index == len(digits)
    return separator.join(parts)


def groups_of_four(length: int) -> list[int]:
    return [4] * (length // 4) + ([length % 4] if length % 4 else [])


# --- the labelled set ----------------------------------------------------------


def load_set() -> list[dict]:
    return [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]


def test_labelled_set_is_well_formed() -> None:
    lines = load_set()
    assert len(lines) >= 250
    ids = [line["id"] for line in lines]
    assert len(set(ids)) == len(ids)
    for line in lines:
        text = line["text"]
        assert isinstance(text, str) and text, line["id"]
        spans = sorted((e["start"], e["end"]) for e in line["entities"])
        for entity in line["entities"]:
            start, end = entity["start"], entity["end"]
            assert entity["type"] in DEFAULT_ENTITIES, line["id"]
            assert 0 <= start < end <= len(text), line["id"]
            value = text[start:end]
            assert value == value.strip(), line["id"]
            assert entity["value"] == value, line["id"]
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert end <= start, f"{line['id']}: gold spans overlap"


def test_labelled_set_covers_negatives_and_heldout() -> None:
    lines = load_set()
    negatives = [line for line in lines if not line["entities"]]
    heldout = [line for line in lines if "heldout" in line.get("note", "")]
    assert len(negatives) >= 80
    assert 0.25 <= len(heldout) / len(lines) <= 0.4
    types = Counter(e["type"] for line in lines for e in line["entities"])
    assert set(types) == set(DEFAULT_ENTITIES)


def score_set(
    scanner: PIIScanner, lines: list[dict]
) -> dict[str, tuple[int, int, int, int]]:
    """Return type -> (true predicted, predicted, found gold, gold)."""
    counts: dict[str, list[int]] = {}
    for line in lines:
        text, gold = line["text"], line["entities"]
        predicted = scanner.scan(text, CONTEXT).findings
        for p in predicted:
            row = counts.setdefault(p.kind, [0, 0, 0, 0])
            row[1] += 1
            row[0] += any(
                g["type"] == p.kind and g["start"] < p.end and p.start < g["end"]
                for g in gold
            )
        for g in gold:
            row = counts.setdefault(g["type"], [0, 0, 0, 0])
            row[3] += 1
            row[2] += any(
                g["type"] == p.kind and g["start"] < p.end and p.start < g["end"]
                for p in predicted
            )
    return {kind: tuple(row) for kind, row in counts.items()}  # type: ignore[misc]


def test_labelled_set_precision_and_recall(scanner: PIIScanner) -> None:
    counts = score_set(scanner, load_set())
    true_predicted = sum(row[0] for row in counts.values())
    predicted = sum(row[1] for row in counts.values())
    found_gold = sum(row[2] for row in counts.values())
    gold = sum(row[3] for row in counts.values())
    assert true_predicted / predicted >= 0.9, counts
    assert found_gold / gold >= 0.95, counts


# --- several entities, overlaps ------------------------------------------------


def test_adjacent_emails_each_found(scanner: PIIScanner) -> None:
    text = "a@x.com, b@y.org; c@z.net"
    detection = scanner.scan(text, CONTEXT)
    assert [(f.kind, f.start, f.end) for f in detection.findings] == [
        ("EMAIL_ADDRESS", 0, 7),
        ("EMAIL_ADDRESS", 9, 16),
        ("EMAIL_ADDRESS", 18, 25),
    ]
    assert detection.reason == "found 3 EMAIL_ADDRESS"


def test_adjacent_phones_each_found(scanner: PIIScanner) -> None:
    text = "Tel: 020 7946 0958 / 020 7946 0959, +1 212 555 0199"
    assert found(scanner, text) == [
        ("PHONE_NUMBER", "020 7946 0958"),
        ("PHONE_NUMBER", "020 7946 0959"),
        ("PHONE_NUMBER", "+1 212 555 0199"),
    ]


def test_card_that_is_also_phone_gives_one_finding(scanner: PIIScanner) -> None:
    # A 14-digit Diners number that phonenumbers also accepts as a valid
    # phone number: both recognizers claim the same characters.
    card = "3629 141777 6310"
    text = f"card {card} ok, call +44 20 7946 0958"
    phone_results = scanner.analyzer.analyze(
        text=text, language="en", entities=["PHONE_NUMBER"], score_threshold=0.0
    )
    assert any(text[r.start : r.end] == card for r in phone_results)

    findings = scanner.scan(text, CONTEXT).findings
    assert [(f.kind, text[f.start : f.end]) for f in findings] == [
        ("CREDIT_CARD", card),
        ("PHONE_NUMBER", "+44 20 7946 0958"),
    ]
    redacted = text
    for finding in reversed(findings):
        redacted = (
            redacted[: finding.start] + f"<{finding.kind}>" + redacted[finding.end :]
        )
    assert redacted == "card <CREDIT_CARD> ok, call <PHONE_NUMBER>"


def test_findings_sorted_and_disjoint(scanner: PIIScanner) -> None:
    text = (
        "Visa 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, "
        "mail x@example.com, ip 203.0.113.9, ssn 536-22-1847, "
        "phone (415) 555-2671, born on 1985-03-14, at 10 Downing Street, "
        "London SW1A 2AA"
    )
    findings = scanner.scan(text, CONTEXT).findings
    assert [f.kind for f in findings] == [
        "CREDIT_CARD",
        "IBAN_CODE",
        "EMAIL_ADDRESS",
        "IP_ADDRESS",
        "US_SSN",
        "PHONE_NUMBER",
        "DATE_OF_BIRTH",
        "STREET_ADDRESS",
    ]
    for before, after in zip(findings, findings[1:], strict=False):
        assert before.end <= after.start


def test_detection_score_and_reason(scanner: PIIScanner) -> None:
    text = "write to jane@example.com or call (415) 555-2671 or jo@example.org"
    detection = scanner.scan(text, CONTEXT)
    assert detection.score == max(f.score for f in detection.findings)
    assert detection.reason == "found 2 EMAIL_ADDRESS, 1 PHONE_NUMBER"
    assert "jane" not in (detection.reason or "")
    assert all(f.rule for f in detection.findings)


def test_nothing_found_scores_zero(scanner: PIIScanner) -> None:
    detection = scanner.scan("Summarise the meeting notes, please.", CONTEXT)
    assert detection.score == 0.0
    assert detection.findings == []


# --- cards -------------------------------------------------------------------------

# (scheme, prefix, length): every prefix range edge and length the scanner
# must recognize.
CARD_CASES = [
    ("visa", "4", 13),
    ("visa", "4", 16),
    ("visa", "4", 19),
    ("mastercard", "51", 16),
    ("mastercard", "55", 16),
    ("mastercard", "2221", 16),
    ("mastercard", "2720", 16),
    ("amex", "34", 15),
    ("amex", "37", 15),
    ("discover", "6011", 16),
    ("discover", "644", 16),
    ("discover", "649", 17),
    ("discover", "65", 19),
    ("jcb", "3528", 16),
    ("jcb", "3589", 19),
    ("diners", "36", 14),
    ("diners", "38", 16),
    ("diners", "300", 14),
    ("diners", "305", 16),
    ("unionpay", "62", 16),
    ("unionpay", "62", 17),
    ("unionpay", "62", 18),
    ("unionpay", "62", 19),
    ("maestro", "6759", 12),
    ("maestro", "5018", 13),
    ("maestro", "6304", 15),
    ("maestro", "5020", 18),
    ("maestro", "6763", 19),
]


@pytest.mark.parametrize(("scheme", "prefix", "length"), CARD_CASES)
def test_card_every_scheme_and_length(
    scanner: PIIScanner, scheme: str, prefix: str, length: int
) -> None:
    rng = random.Random(f"{prefix}-{length}")
    digits = luhn_number(prefix, length, rng)
    sizes = {14: [4, 6, 4], 15: [4, 6, 5]}.get(length, groups_of_four(length))
    for value in (
        grouped(digits, groups_of_four(length), " "),
        grouped(digits, sizes, "-"),
    ):
        text = f"Use {value} for the booking."
        assert found(scanner, text) == [("CREDIT_CARD", value)], (scheme, value)
    text = f"my {scheme} card is {digits}."
    assert found(scanner, text) == [("CREDIT_CARD", digits)], scheme


def test_card_failing_luhn_not_reported(scanner: PIIScanner) -> None:
    digits = luhn_number("4", 16, random.Random(7))
    broken = digits[:-1] + str((int(digits[-1]) + 1) % 10)
    assert found(scanner, f"card {grouped(broken, [4, 4, 4, 4], ' ')}") == []


def test_card_wrong_length_for_scheme_not_reported(scanner: PIIScanner) -> None:
    # Amex numbers have 15 digits; a Luhn-valid 16-digit 37... is no card.
    digits = luhn_number("37", 16, random.Random(8))
    assert found(scanner, f"card {grouped(digits, [4, 4, 4, 4], ' ')}") == []


@pytest.mark.parametrize(
    "text",
    [
        "Order #4539148803436467 shipped today.",
        "Order 4539148803436467 shipped today.",
        "event at 1704164645123 ms since epoch",
        "row id 6011000990139424 in the table",
    ],
)
def test_bare_luhn_run_without_card_words_not_card(
    scanner: PIIScanner, text: str
) -> None:
    assert found(scanner, text) == []


@pytest.mark.parametrize(
    "text",
    [
        "card number 4539148803436467",
        "Please charge 4539148803436467 for the order.",
        "4539148803436467 exp 11/26 cvv 123",
        "Order paid with Visa 4539148803436467",
    ],
)
def test_bare_luhn_run_with_card_words_is_card(scanner: PIIScanner, text: str) -> None:
    assert found(scanner, text) == [("CREDIT_CARD", "4539148803436467")]


def test_grouped_card_needs_no_card_words(scanner: PIIScanner) -> None:
    assert found(scanner, "ref 4539 1488 0343 6467 attached") == [
        ("CREDIT_CARD", "4539 1488 0343 6467")
    ]


def test_bare_card_reported_with_lower_threshold() -> None:
    scanner = build_scanner("pii", {"score_threshold": 0.2})
    detection = scanner.scan("Order 4539148803436467", CONTEXT)
    assert [(f.kind, f.score) for f in detection.findings] == [("CREDIT_CARD", 0.3)]


# --- phones ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "+44 20 7946 0958",
        "+49 30 901820",
        "+33 1 42 68 53 00",
        "+91 98765 43210",
        "+81 3-1234-5678",
        "(415) 555-2671",
        "415.555.2671",
        "+1 212 555 0199",
        "+61 2 9876 5432",
        "+55 11 91234-5678",
        "+34 912 345 678",
        "+39 06 1234 5678",
        "+31 20 123 4567",
        "+52 55 1234 5678",
        "+86 10 1234 5678",
        "+442079460958",
        "+44 (0)20 7946 0958",
        "020 7946 0958",
        "030 901820",
        "01 42 68 53 00",
        "03-1234-5678",
    ],
)
def test_phone_international_formats(scanner: PIIScanner, value: str) -> None:
    text = f"Please call {value} tomorrow."
    assert found(scanner, text) == [("PHONE_NUMBER", value)]


def test_phone_national_format_needs_its_region() -> None:
    text = "The London number is 020 7946 0958."
    gb = build_scanner("pii", {"countries": ["GB"]})
    us = build_scanner("pii", {"countries": ["US"]})
    assert found(gb, text) == [("PHONE_NUMBER", "020 7946 0958")]
    assert found(us, text) == []
    # With a country code the region setting does not matter.
    assert found(us, "call +44 20 7946 0958") == [("PHONE_NUMBER", "+44 20 7946 0958")]


def test_phone_bare_digits_need_phone_words(scanner: PIIScanner) -> None:
    assert found(scanner, "Call 4155552671 tomorrow") == [
        ("PHONE_NUMBER", "4155552671")
    ]
    assert found(scanner, "Invoice 4155552671 is due") == []


# --- look-alikes ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Upgrade to version 1.2.3.4 of the agent.",
        "firmware v2 build 10.0.0.1 flashed",
        "OID 1.3.6.1.4.1.311.21.8",
        "Python 3.11.7 and numpy 1.26.4",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it",
        "short sha a1b2c3d and 9fceb02",
        "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "request 550e8400-e29b-41d4-a716-446655440000 failed",
        "Created at 2024-01-02T03:04:05Z by the scheduler.",
        "Deadline 03/15/2025, review 2025-03-20",
        "ISBN 978-3-16-148410-0",
        "Order #2125550199 shipped",
        "Part no. 512-34-7788 in stock",
        "Ticket #4821-7732 closed",
        "MAC 00:1A:2B:3C:4D:5E on port 8080",
        "use std::vector and std::map",
        "Coordinates 37.7749, -122.4194",
        "Contact root@localhost for access",
        "There are 3 dogs on the road.",
        "Born in 1985, joined on 2010-05-01.",
    ],
)
def test_look_alikes_not_reported(scanner: PIIScanner, text: str) -> None:
    assert found(scanner, text) == []


def test_dotted_quad_without_version_word_is_ip(scanner: PIIScanner) -> None:
    assert found(scanner, "ping 1.2.3.4 now") == [("IP_ADDRESS", "1.2.3.4")]


def test_ipv6_forms(scanner: PIIScanner) -> None:
    text = "hosts 2001:db8::1, fe80::1ff:fe23:4567:890a and ::1"
    assert found(scanner, text) == [
        ("IP_ADDRESS", "2001:db8::1"),
        ("IP_ADDRESS", "fe80::1ff:fe23:4567:890a"),
        ("IP_ADDRESS", "::1"),
    ]


def test_birth_date_needs_birth_word(scanner: PIIScanner) -> None:
    text = "DOB: 1985-03-14, admitted 2024-01-02 at 2024-01-02T03:04:05Z"
    assert found(scanner, text) == [("DATE_OF_BIRTH", "1985-03-14")]
    assert found(scanner, "born on March 4, 1985") == [
        ("DATE_OF_BIRTH", "March 4, 1985")
    ]
    assert found(scanner, "14/03/1985 (date of birth)") == [
        ("DATE_OF_BIRTH", "14/03/1985")
    ]
    assert found(scanner, "date of birth: 31/02/1985") == []


def test_street_address_spans(scanner: PIIScanner) -> None:
    assert found(
        scanner, "Ship to 1600 Pennsylvania Avenue NW, Washington, DC 20500."
    ) == [("STREET_ADDRESS", "1600 Pennsylvania Avenue NW, Washington, DC 20500")]
    assert found(scanner, "I live at 221B Baker Street, London NW1 6XE.") == [
        ("STREET_ADDRESS", "221B Baker Street, London NW1 6XE")
    ]
    assert found(scanner, "Suite: 4821 Oak Ridge Dr, Apt 12B, Austin, TX 78731") == [
        ("STREET_ADDRESS", "4821 Oak Ridge Dr, Apt 12B, Austin, TX 78731")
    ]


def test_ssn_forms(scanner: PIIScanner) -> None:
    assert found(scanner, "SSN: 219-09-9999 and ssn 219099998") == [
        ("US_SSN", "219-09-9999"),
        ("US_SSN", "219099998"),
    ]
    # Area 666 and the published example number are never issued.
    assert found(scanner, "SSN 666-12-3456 or 123-45-6789") == []
    # A bare 9-digit run needs an SSN word.
    assert found(scanner, "customer 219099998") == []


# --- long texts -------------------------------------------------------------------

FILLER = "The quarterly report covers revenue, churn and the roadmap. "


def test_long_text_entity_at_end(scanner: PIIScanner) -> None:
    body = FILLER * 200
    text = body + "Reach me at jane.doe@example.com"
    assert len(text) > 10_000
    detection = scanner.scan(text, CONTEXT)
    assert [(f.kind, f.start, f.end) for f in detection.findings] == [
        ("EMAIL_ADDRESS", len(body) + 12, len(text))
    ]


def test_long_text_many_entities_all_found(scanner: PIIScanner) -> None:
    parts, expected = [], []
    offset = 0
    for index in range(40):
        filler = FILLER * 4
        email = f"user{index}@example.com"
        parts.append(filler + email + " ")
        expected.append((offset + len(filler), offset + len(filler) + len(email)))
        offset += len(filler) + len(email) + 1
    text = "".join(parts)
    assert len(text) > 10_000
    spans = [(f.start, f.end) for f in scanner.scan(text, CONTEXT).findings]
    assert spans == expected


@pytest.mark.parametrize(
    "boundary", [MIN_WINDOW - 2 * WINDOW_MARGIN, MIN_WINDOW - WINDOW_MARGIN]
)
def test_entity_across_window_boundary_found_once(boundary: int) -> None:
    # With the smallest window, owned ranges are 512 characters and chunks
    # end 256 characters further. An email cut at ".co" would still be a
    # valid address, so a wrongly cut window shows up as a wrong span.
    scanner = build_scanner("pii", {"window": MIN_WINDOW})
    email = "jane.doe@example.com"
    for start in range(boundary - len(email) - 2, boundary + 3):
        text = (
            "x " * (start // 2) + (" " if start % 2 else "") + email + " " + FILLER * 30
        )
        assert text.index(email) == start
        findings = scanner.scan(text, CONTEXT).findings
        assert [(f.kind, f.start, f.end) for f in findings] == [
            ("EMAIL_ADDRESS", start, start + len(email))
        ], start


def test_windows_partition_text() -> None:
    length, window = 10_000, MIN_WINDOW
    owned = []
    for chunk_start, chunk_end, own_start, own_end in windows(length, window):
        assert chunk_end - chunk_start <= window
        assert chunk_start <= max(0, own_start - WINDOW_MARGIN)
        assert chunk_end >= min(length, own_end + WINDOW_MARGIN)
        owned.append((own_start, own_end))
    assert owned[0][0] == 0
    assert owned[-1][1] == length
    for (_, end), (start, _) in zip(owned, owned[1:], strict=False):
        assert end == start
    assert list(windows(100, window)) == [(0, 100, 0, 100)]


# --- settings ------------------------------------------------------------------------


def test_entities_setting_limits_types() -> None:
    scanner = build_scanner("pii", {"entities": ["PHONE_NUMBER"]})
    text = "mail jane@example.com or call (415) 555-2671"
    assert found(scanner, text) == [("PHONE_NUMBER", "(415) 555-2671")]


def test_allow_setting_skips_exact_values() -> None:
    scanner = build_scanner("pii", {"allow": ["support@example.com"]})
    text = "mail support@example.com or jane@example.com"
    assert found(scanner, text) == [("EMAIL_ADDRESS", "jane@example.com")]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"entity": ["EMAIL_ADDRESS"]}, "no setting"),
        ({"entities": "EMAIL_ADDRESS"}, "list of strings"),
        ({"entities": ["PERSON"]}, "PERSON"),
        ({"entities": []}, "empty"),
        ({"countries": ["XX"]}, "XX"),
        ({"countries": "US"}, "list of strings"),
        ({"score_threshold": "high"}, "number"),
        ({"score_threshold": True}, "number"),
        ({"score_threshold": 1.5}, "between 0 and 1"),
        ({"allow": [1, 2]}, "list of strings"),
        ({"window": 100}, "between"),
        ({"window": 4096.0}, "integer"),
    ],
)
def test_invalid_settings_rejected(settings: dict, message: str) -> None:
    with pytest.raises(ScannerConfigError, match=message):
        build_scanner("pii", settings)


def test_settings_normalised() -> None:
    scanner = build_scanner(
        "pii",
        {"countries": ["gb", "GB", "de"], "score_threshold": 1, "window": 2048},
    )
    assert isinstance(scanner, PIIScanner)
    assert scanner.countries == ("GB", "DE")
    assert scanner.score_threshold == 1.0
    assert scanner.window == 2048
    assert scanner.kind == "pii"
    assert scanner.spans is True


def test_scanners_share_engine_per_region_list() -> None:
    first = build_scanner("pii", {"countries": ["FR"]})
    second = build_scanner("pii", {"countries": ["FR"], "entities": ["PHONE_NUMBER"]})
    assert isinstance(first, PIIScanner) and isinstance(second, PIIScanner)
    assert first.analyzer is second.analyzer


# --- no network, no model ---------------------------------------------------------

OFFLINE_SCRIPT = """
import socket, sys

def refuse(*args, **kwargs):
    sys.stderr.write("NETWORK ATTEMPT %r\\n" % (args,))
    raise OSError("network disabled for this test")

socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse

import spacy

def no_model(*args, **kwargs):
    raise RuntimeError("spaCy model load attempted: %r" % (args,))

spacy.load = no_model

from keelway.guardrails.base import ScanContext
from keelway.guardrails.registry import build_scanner

scanner = build_scanner("pii", {})
text = "mail jane@mail.example.co.uk or call +44 20 7946 0958"
detection = scanner.scan(text, ScanContext())
print(";".join(f"{f.kind}={text[f.start:f.end]}" for f in detection.findings))
"""
OFFLINE_EXPECTED = "EMAIL_ADDRESS=jane@mail.example.co.uk;PHONE_NUMBER=+44 20 7946 0958"


def offline_env(tmp_path: Path) -> dict[str, str]:
    # A fresh home and cache directory, so no suffix list cached by an
    # earlier tldextract run can stand in for the bundled snapshot.
    env = dict(os.environ)
    env["HOME"] = str(tmp_path)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env.pop("TLDEXTRACT_CACHE", None)
    return env


def unshare_works() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


def test_scan_makes_no_network_call(tmp_path: Path) -> None:
    # The script replaces the socket functions with ones that record the
    # attempt and fail. Where possible it also runs in a network namespace
    # with no interfaces, so a call that slipped past the patch would fail
    # too (and show up as a wrong result or a non-zero exit status).
    command = [sys.executable, "-c", OFFLINE_SCRIPT]
    if unshare_works():
        command = ["unshare", "-n", *command]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env=offline_env(tmp_path),
    )
    assert completed.returncode == 0, completed.stderr
    assert "NETWORK ATTEMPT" not in completed.stderr
    assert completed.stdout.strip() == OFFLINE_EXPECTED
    assert not (tmp_path / "cache" / "python-tldextract").exists()


def test_detection_type(scanner: PIIScanner) -> None:
    assert isinstance(scanner.scan("nothing here", CONTEXT), Detection)
