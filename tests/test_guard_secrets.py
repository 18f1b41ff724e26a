"""The secrets scanner: spans, types, the labelled set and settings."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from keelway.guardrails.base import ScanContext, ScannerConfigError
from keelway.guardrails.secrets import TYPES, build_secrets

DATA = Path(__file__).parents[1] / "src/keelway/guardrails/data/secrets.jsonl"
CONTEXT = ScanContext(source="user")

# Fake values with the right shape; none of them is a real credential.
GITHUB = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
AWS = "AKIA" + "Q4ZT7WXY2KPL5MNB"
RANDOM_TOKEN = "q7Zx4Lm9Tb2Wc8Rv5Nk3Hd6Fs1Yp0Gj"


def _rows() -> list[dict[str, Any]]:
    with DATA.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _spans(text: str, **settings: Any) -> list[tuple[str, str]]:
    detection = build_secrets(settings).scan(text, CONTEXT)
    return [(f.kind, text[f.start : f.end]) for f in detection.findings]


def test_dataset_offsets_match_values() -> None:
    rows = _rows()
    assert len(rows) >= 100
    for row in rows:
        for entity in row["entities"]:
            assert row["text"][entity["start"] : entity["end"]] == entity["value"], row[
                "id"
            ]
            assert entity["type"] in TYPES, row["id"]


def test_dataset_has_negatives() -> None:
    negatives = [row for row in _rows() if not row["entities"]]
    assert len(negatives) >= 30


def test_dataset_precision_and_recall() -> None:
    scanner = build_secrets({})
    true_positive = false_positive = false_negative = 0
    for row in _rows():
        expected = {(e["type"], e["start"], e["end"]) for e in row["entities"]}
        found = {
            (f.kind, f.start, f.end)
            for f in scanner.scan(row["text"], CONTEXT).findings
        }
        true_positive += len(expected & found)
        false_positive += len(found - expected)
        false_negative += len(expected - found)
    assert true_positive / (true_positive + false_negative) >= 0.95
    assert true_positive / (true_positive + false_positive) >= 0.9


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        (f"key {AWS} here", "AWS_ACCESS_KEY", AWS),
        (f"token={GITHUB}", "GITHUB_TOKEN", GITHUB),
        (
            "glpat-" + "Ab1Cd2Ef3Gh4Ij5Kl6Mn",
            "GITLAB_TOKEN",
            "glpat-Ab1Cd2Ef3Gh4Ij5Kl6Mn",
        ),
        ("hf_" + "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1W", "HUGGINGFACE_TOKEN", None),
        ("npm_" + "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2", "NPM_TOKEN", None),
        ("sk_live_" + "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8", "STRIPE_KEY", None),
        ("ya29." + "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9", "GOOGLE_OAUTH_TOKEN", None),
    ],
)
def test_shape_rules_span_value(text: str, kind: str, value: str | None) -> None:
    found = _spans(text)
    assert len(found) == 1
    assert found[0][0] == kind
    assert found[0][1] == (value or text)


def test_url_password_spans_password_only() -> None:
    text = "DATABASE_URL=postgres://app:Zq8!vL2pW9@db.internal:5432/main"
    assert _spans(text) == [("URL_PASSWORD", "Zq8!vL2pW9")]


def test_aws_secret_key_needs_context() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKE"
    assert _spans(f"aws_secret_access_key = {secret}") == [("AWS_SECRET_KEY", secret)]
    assert ("AWS_SECRET_KEY", secret) not in _spans(f"value {secret}")


def test_private_key_block_spans_whole_block() -> None:
    block = (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx9Qm\nZ3k+8a==\n"
        "-----END RSA PRIVATE KEY-----"
    )
    assert _spans(f"key:\n{block}\nthanks") == [("PRIVATE_KEY", block)]


def test_jwt_needs_alg_header() -> None:
    header = (
        base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    )
    claims = base64.urlsafe_b64encode(b'{"sub":"42"}').decode().rstrip("=")
    token = f"{header}.{claims}.c2lnbmF0dXJlc2lnbmF0dXJl"
    assert _spans(f"Bearer {token}") == [("JWT", token)]
    no_alg = base64.urlsafe_b64encode(b'{"typ":"JWT","kid":"1"}').decode().rstrip("=")
    assert ("JWT", f"{no_alg}.{claims}.x") not in _spans(f"{no_alg}.{claims}.x")


def test_high_entropy_token_found() -> None:
    assert _spans(f"session: {RANDOM_TOKEN}") == [("HIGH_ENTROPY", RANDOM_TOKEN)]


@pytest.mark.parametrize(
    "text",
    [
        "commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it",
        "request 123e4567-e89b-12d3-a456-426614174000 timed out",
        "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "OPENAI_API_KEY=sk-... goes here",
        'api_key = "YOUR_API_KEY"',
        "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx is the format",
        "postgres://user:password@localhost/app",
        "internationalization_and_localization_helpers",
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlE",
    ],
)
def test_look_alikes_not_reported(text: str) -> None:
    assert _spans(text) == []


def test_findings_do_not_overlap() -> None:
    text = f"GITHUB_TOKEN={GITHUB} and api_key={AWS}"
    detection = build_secrets({}).scan(text, CONTEXT)
    assert [f.kind for f in detection.findings] == ["GITHUB_TOKEN", "AWS_ACCESS_KEY"]
    assert detection.score == 1.0
    assert detection.reason == "found 1 GITHUB_TOKEN, 1 AWS_ACCESS_KEY"


def test_allow_list_suppresses_value() -> None:
    assert _spans(f"key {AWS}", allow=[AWS]) == []
    assert _spans(f"key {RANDOM_TOKEN}", allow=[RANDOM_TOKEN]) == []


def test_types_setting_limits_rules() -> None:
    text = f"{GITHUB} {AWS}"
    assert _spans(text, types=["AWS_ACCESS_KEY"]) == [("AWS_ACCESS_KEY", AWS)]


def test_entropy_settings_change_result() -> None:
    text = f"session: {RANDOM_TOKEN}"
    assert _spans(text, min_length=40) == []
    assert _spans(text, entropy_threshold=5.5) == []


def test_nothing_found_in_plain_text() -> None:
    detection = build_secrets({}).scan("Please summarize the meeting notes.", CONTEXT)
    assert detection.score == 0.0
    assert detection.findings == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"colour": "red"}, "has no setting(s): colour"),
        ({"types": ["AWS_ACCESS_KEY", "PASSPORT"]}, "unknown type(s) PASSPORT"),
        ({"types": []}, "types must be a non-empty list"),
        ({"entropy_threshold": 0}, "entropy_threshold must be"),
        ({"entropy_threshold": "high"}, "entropy_threshold must be"),
        ({"min_length": 4}, "min_length must be an integer of at least 8"),
        ({"allow": "abc"}, "allow must be a list of strings"),
    ],
)
def test_build_rejects_bad_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ScannerConfigError) as error:
        build_secrets(settings)
    assert message in str(error.value)
