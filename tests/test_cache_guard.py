"""The lexical guard on semantic cache hits, without the embedding model."""

from __future__ import annotations

import pytest

from keelway.cache.guard import compare, features, stem

SAME = [
    ("How do I reset my password?", "How can I reset my password?"),
    ("Can I get a refund?", "Is it possible to get a refund?"),
    ("What is your refund policy?", "Tell me about your refund policy."),
    ("What is the capital of France?", "What's the capital of France?"),
    ("What's the refund policy for EU orders?", "Refund policy for orders in the EU?"),
    ("How do I cancel my subscription?", "How can I cancel my subscriptions?"),
    ("I cannot log in", "I can't log in"),
    ("I dont have access", "I don\u2019t have access"),
    ("What is the price of the Pro plan?", "what is the price of the pro plan"),
    ("Upgrade costs 1,000 dollars?", "Upgrade costs 1000 dollars?"),
]

DIFFERENT = [
    ("Can I get a refund?", "Can I not get a refund?", "negation"),
    ("Can I get a refund?", "Why can't I get a refund?", "negation"),
    (
        "Is the API available in Europe?",
        "Is the API not available in Europe?",
        "negation",
    ),
    ("Should I use async here?", "Should I never use async here?", "negation"),
    ("Does the plan include support?", "Doesn't the plan include support?", "negation"),
    ("I want to enable it", "I dont want to enable it", "negation"),
    ("Install on Ubuntu 22.04", "Install on Ubuntu 24.04", "numbers"),
    ("Revenue in 2023?", "Revenue in 2024?", "numbers"),
    ("Is there a meeting on March 3?", "Is there a meeting on March 4?", "numbers"),
    ("What is 2+2?", "What is 2+2+2?", "numbers"),
    (
        "What does 'connection refused' mean?",
        "What does 'connection reset' mean?",
        "quoted",
    ),
    (
        "Refund policy for orders in the EU?",
        "Refund policy for orders in the US?",
        "entities",
    ),
    ("Price of the Pro plan?", "Price of the Team plan?", "entities"),
    ("Reset my password on iOS", "Reset my password on Android", "entities"),
    (
        "How do I sort a list in Python?",
        "How do I sort a list in JavaScript?",
        "entities",
    ),
    ("When is the meeting?", "Where is the meeting?", "question_words"),
    ("Why is the sky blue?", "Is the sky blue?", "question_words"),
    ("How do I enable 2FA?", "How do I disable 2FA?", "content"),
    ("Cancel my monthly subscription", "Cancel my annual subscription", "content"),
    ("Flights to Paris", "Flights from Paris", "content"),
    (
        "How do I cancel my subscription?",
        "How do I cancel my free subscription?",
        "content",
    ),
    ("Can you help me?", "Can I help you?", "stop_words"),
]


@pytest.mark.parametrize(("request_text", "cached"), SAME)
def test_guard_passes_rewordings(request_text: str, cached: str) -> None:
    verdict = compare(request_text, cached)
    assert verdict.passed, verdict.reason
    assert verdict.check == "passed"


@pytest.mark.parametrize(("request_text", "cached", "check"), DIFFERENT)
def test_guard_rejects_different_questions(
    request_text: str, cached: str, check: str
) -> None:
    verdict = compare(request_text, cached)
    assert not verdict.passed
    assert verdict.check == check, verdict.reason
    # The comparison is symmetric in outcome.
    assert compare(cached, request_text).check == check


def test_reason_names_the_differing_words() -> None:
    verdict = compare("Refund policy for the EU", "Refund policy for the US")
    assert verdict.reason == (
        "entities differ: ['eu'] only in the request and ['us'] only in the cached text"
    )
    verdict = compare("Cancel my monthly plan", "Cancel my annual plan")
    assert "['monthly'] only in the request" in verdict.reason
    assert "['annual'] only in the cached text" in verdict.reason


def test_contractions_expand_to_negations() -> None:
    words = features("Why can't I? Won't it? I dont know, ain't sure.").words
    assert words.count("not") == 4
    assert "can" in words
    assert "will" in words
    assert "do" in words


def test_sentence_initial_capital_is_not_an_entity() -> None:
    assert features("Refund policy. Where is it? I think so").entities == frozenset()
    assert features("Refund policy for Acme. EU and iOS").entities == {
        "acme",
        "eu",
        "ios",
    }


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("orders", "order"),
        ("policies", "policy"),
        ("resetting", "reset"),
        ("enabled", "enabl"),
        ("enable", "enabl"),
        ("address", "address"),
        ("status", "status"),
    ],
)
def test_stem(word: str, expected: str) -> None:
    assert stem(word) == expected


def test_guard_handles_long_text() -> None:
    text = "Is the API available in Europe? " * 2000
    assert compare(text, text).passed
