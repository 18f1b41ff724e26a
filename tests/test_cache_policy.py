"""Per-request cache controls and the deterministic-only default."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.datastructures import Headers

from keelway.cache import CachePolicy, InvalidCacheDirective, cache_policy

DETERMINISTIC: dict[str, Any] = {"model": "m", "messages": [], "temperature": 0}
SAMPLED: dict[str, Any] = {"model": "m", "messages": [], "temperature": 0.7}


@pytest.mark.parametrize(
    ("headers", "body", "read", "write"),
    [
        ({}, DETERMINISTIC, True, True),
        ({}, {**SAMPLED, "seed": 7}, True, True),
        ({}, {**DETERMINISTIC, "n": 3, "stream": True}, True, True),
        ({}, SAMPLED, False, False),
        ({}, {"model": "m", "messages": []}, False, False),
        ({"Cache-Control": "no-cache"}, DETERMINISTIC, False, True),
        ({"Cache-Control": "no-store"}, DETERMINISTIC, False, False),
        ({"cache-control": "max-age=0, No-Store"}, DETERMINISTIC, False, False),
        ({"Cache-Control": "max-age=60"}, DETERMINISTIC, True, True),
        ({"X-Keelway-Cache": "no-cache"}, DETERMINISTIC, False, True),
        ({"X-Keelway-Cache": "no-store"}, DETERMINISTIC, False, False),
        ({"X-Keelway-Cache": "force"}, SAMPLED, True, True),
        ({"X-Keelway-Cache": "FORCE"}, SAMPLED, True, True),
        (
            {"X-Keelway-Cache": "force", "Cache-Control": "no-cache"},
            SAMPLED,
            False,
            True,
        ),
        (
            {"X-Keelway-Cache": "force", "Cache-Control": "no-store"},
            SAMPLED,
            False,
            False,
        ),
        ({}, {**SAMPLED, "metadata": {"cache": "force"}}, True, True),
        ({}, {**DETERMINISTIC, "metadata": {"cache": "no-store"}}, False, False),
        ({}, {**DETERMINISTIC, "metadata": {"cache": "no-cache"}}, False, True),
        ({}, {**DETERMINISTIC, "metadata": {"trace": "x"}}, True, True),
        ({}, {**SAMPLED, "seed": True}, False, False),
        ({}, {**SAMPLED, "temperature": False}, False, False),
    ],
)
def test_policy(
    headers: dict[str, str], body: dict[str, Any], read: bool, write: bool
) -> None:
    policy = cache_policy(headers, body)
    assert (policy.read, policy.write) == (read, write), policy.reason


def test_reasons_name_the_source() -> None:
    assert cache_policy({"Cache-Control": "no-store"}, DETERMINISTIC) == CachePolicy(
        False, False, "no-store from Cache-Control header"
    )
    forced = cache_policy({}, {**SAMPLED, "metadata": {"cache": "force"}})
    assert forced.reason == "forced by metadata.cache"
    assert cache_policy({}, DETERMINISTIC).reason == "deterministic: temperature is 0"
    skipped = cache_policy({}, SAMPLED)
    assert "temperature 0.7" in skipped.reason
    assert "X-Keelway-Cache: force" in skipped.reason


def test_starlette_headers_are_read_case_insensitively() -> None:
    headers = Headers(raw=[(b"x-keelway-cache", b"no-cache")])
    assert cache_policy(headers, DETERMINISTIC).read is False


@pytest.mark.parametrize(
    ("headers", "body", "param"),
    [
        ({"X-Keelway-Cache": "sometimes"}, DETERMINISTIC, "X-Keelway-Cache"),
        ({}, {**DETERMINISTIC, "metadata": {"cache": "yes"}}, "metadata.cache"),
        ({}, {**DETERMINISTIC, "metadata": {"cache": False}}, "metadata.cache"),
    ],
)
def test_unknown_directive_raises_naming_the_value(
    headers: dict[str, str], body: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidCacheDirective) as raised:
        cache_policy(headers, body)
    assert raised.value.param == param
    assert param in str(raised.value)
    assert "'no-store', 'no-cache' or 'force'" in str(raised.value)
