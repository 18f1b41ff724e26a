"""Versions, bump proposals, labels and prompt references."""

from __future__ import annotations

from typing import Any

import pytest

from keelway.prompts.content import PromptContent
from keelway.prompts.errors import InvalidReference
from keelway.prompts.versioning import (
    FIRST_VERSION,
    Bump,
    PromptReference,
    Version,
    choose_level,
    is_small_fix,
    matches,
    next_version,
    parse_reference,
    propose_bump,
    validate_label,
)

# Version


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("1.4.0", Version(1, 4, 0)),
        ("0.0.0", Version(0, 0, 0)),
        ("10.20.30", Version(10, 20, 30)),
        ("999999999.0.1", Version(999999999, 0, 1)),
    ],
)
def test_version_parse(text: str, version: Version) -> None:
    assert Version.parse(text) == version


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "1.4",
        "1.4.0.0",
        "01.0.0",
        "1.04.0",
        "1.0.00",
        "v1.0.0",
        " 1.0.0",
        "1.0.0 ",
        "a.b.c",
        "-1.0.0",
        "1..0",
        "1234567890.0.0",
        "１.0.0",
    ],
)
def test_version_parse_invalid(text: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        Version.parse(text)
    assert str(caught.value).startswith(
        f"invalid version {text!r}: expected MAJOR.MINOR.PATCH"
    )


def test_version_str() -> None:
    assert str(Version(1, 4, 0)) == "1.4.0"


def test_version_order_numeric() -> None:
    assert Version(1, 10, 0) > Version(1, 9, 9)


def test_version_sorting() -> None:
    versions = [Version(2, 0, 0), Version(1, 0, 10), Version(1, 0, 2)]
    assert sorted(versions) == [Version(1, 0, 2), Version(1, 0, 10), Version(2, 0, 0)]


def test_version_negative_part() -> None:
    with pytest.raises(InvalidReference):
        Version(1, -1, 0)


def test_first_version() -> None:
    assert Version(1, 0, 0) == FIRST_VERSION


# next_version and choose_level


@pytest.mark.parametrize(
    ("previous", "level", "expected"),
    [
        (None, "patch", Version(1, 0, 0)),
        (None, "major", Version(1, 0, 0)),
        (Version(1, 4, 2), "patch", Version(1, 4, 3)),
        (Version(1, 4, 2), "minor", Version(1, 5, 0)),
        (Version(1, 4, 2), "major", Version(2, 0, 0)),
        (Version(0, 9, 9), "minor", Version(0, 10, 0)),
    ],
)
def test_next_version(previous: Version | None, level: str, expected: Version) -> None:
    assert next_version(previous, level) == expected


def test_next_version_unknown_level() -> None:
    with pytest.raises(InvalidReference) as caught:
        next_version(Version(1, 0, 0), "huge")
    assert str(caught.value) == "unknown bump level 'huge'; use patch, minor or major"


MINOR = Bump(
    "minor", ("variable 'x' added", "description changed"), ("variable 'x' added",)
)


def test_choose_level_default() -> None:
    assert choose_level(MINOR, None) == "minor"


def test_choose_level_same() -> None:
    assert choose_level(MINOR, "minor") == "minor"


def test_choose_level_raise() -> None:
    assert choose_level(MINOR, "major") == "major"


def test_choose_level_lower_rejected() -> None:
    with pytest.raises(InvalidReference) as caught:
        choose_level(MINOR, "patch")
    assert str(caught.value) == (
        "cannot lower the bump from minor to patch: the change needs at least "
        "minor (variable 'x' added)"
    )


def test_choose_level_lower_without_deciding() -> None:
    with pytest.raises(InvalidReference) as caught:
        choose_level(Bump("major", ("tools changed",)), "minor")
    assert str(caught.value) == (
        "cannot lower the bump from major to minor: the change needs at least "
        "major (tools changed)"
    )


def test_choose_level_unknown() -> None:
    with pytest.raises(InvalidReference) as caught:
        choose_level(MINOR, "Major")
    assert str(caught.value) == "unknown bump level 'Major'; use patch, minor or major"


# propose_bump

BASE: dict[str, Any] = {
    "description": "Answer questions.",
    "variables": {
        "passage": "string",
        "question": "string",
        "count": {"type": "integer", "default": 3},
        "audience": {"type": "string", "required": False},
    },
    "messages": [
        {"role": "system", "content": "You answer from the passage only."},
        {
            "role": "user",
            "content": "{{ passage }}\nQuestion: {{ question }} ({{ count }})",
        },
    ],
    "model": {
        "group": "fast",
        "temperature": 0.2,
        "response_format": {"type": "json_object"},
        "extra": {"seed": 1},
    },
    "links": {"rag_collection": "docs"},
}


def changed(**edits: Any) -> PromptContent:
    """Return BASE with top-level sections replaced and dotted paths set."""
    data: dict[str, Any] = {
        "description": BASE["description"],
        "variables": dict(BASE["variables"]),
        "messages": [dict(message) for message in BASE["messages"]],
        "model": dict(BASE["model"]),
        "links": dict(BASE["links"]),
    }
    for key, value in edits.items():
        section, _, field = key.partition("__")
        if not field:
            data[section] = value
        elif section == "messages":
            data["messages"][int(field)]["content"] = value
        elif value is None:
            data[section].pop(field, None)
        else:
            data[section][field] = value
    return PromptContent.from_dict(data)


OLD = changed()
SYSTEM = BASE["messages"][0]["content"]

BUMP_CASES = [
    (
        changed(variables__audience=None),
        "major",
        "variable 'audience' removed",
    ),
    (changed(variables__topic="string"), "major", "required variable 'topic' added"),
    (
        changed(variables__topic={"type": "string", "required": False}),
        "minor",
        "variable 'topic' added",
    ),
    (
        changed(variables__topic={"type": "string", "default": "x"}),
        "minor",
        "variable 'topic' added",
    ),
    (
        changed(variables__count={"type": "number", "default": 3}),
        "major",
        "variable 'count' type integer -> number",
    ),
    (
        changed(variables__count={"type": "integer", "default": 5}),
        "major",
        "variable 'count' default 3 -> 5",
    ),
    (changed(variables__count="integer"), "major", "variable 'count' now required"),
    (
        changed(variables__question={"type": "string", "required": False}),
        "minor",
        "variable 'question' now optional",
    ),
    (
        changed(variables__question={"type": "string", "description": "The question."}),
        "patch",
        "variable 'question' description changed",
    ),
    (
        changed(model__response_format={"type": "text"}),
        "major",
        "response_format changed",
    ),
    (changed(model__response_format=None), "major", "response_format changed"),
    (
        changed(model__tools=[{"type": "function", "function": {"name": "f"}}]),
        "major",
        "tools changed",
    ),
    (changed(model__temperature=0.7), "minor", "temperature 0.2 -> 0.7"),
    (changed(model__temperature=None), "minor", "temperature 0.2 -> unset"),
    (changed(model__max_tokens=100), "minor", "max_tokens unset -> 100"),
    (changed(model__group="smart"), "minor", 'group "fast" -> "smart"'),
    (changed(model__stop=["END"]), "minor", 'stop unset -> ["END"]'),
    (changed(model__extra={"seed": 2}), "minor", "seed 1 -> 2"),
    (
        changed(model__extra={"seed": 1, "presence_penalty": 0.5}),
        "minor",
        "presence_penalty unset -> 0.5",
    ),
    (
        changed(messages__0="You answer from the passage only, in French."),
        "minor",
        "messages[0] wording changed",
    ),
    (
        changed(messages__0="You  answer from the\npassage only."),
        "patch",
        "messages[0] small text fix",
    ),
    (
        changed(messages__0="you answer from the Passage only"),
        "patch",
        "messages[0] small text fix",
    ),
    (
        changed(messages__0="You answer from teh passage only."),
        "patch",
        "messages[0] small text fix",
    ),
    (
        changed(messages__0="You answer from the passage onl."),
        "patch",
        "messages[0] small text fix",
    ),
    (
        changed(messages__0="You answer from the pasage onl."),
        "patch",
        "messages[0] small text fix",
    ),
    (
        changed(messages__0="You answer from these passages only"),
        "minor",
        "messages[0] wording changed",
    ),
    (
        changed(messages__1="{{passage}}\nQuestion: {{question}} ({{count}})"),
        "patch",
        "messages[1] small text fix",
    ),
    (
        changed(
            messages__1="{{ passage }}\nQuestion: {{ question }} ({{ count }})"
            "{# note #}"
        ),
        "patch",
        "messages[1] small text fix",
    ),
    (
        changed(messages__1="{{ question }}\nQuestion: {{ passage }} ({{ count }})"),
        "minor",
        "messages[1] wording changed",
    ),
    (
        changed(
            messages__1="{{ passage }}\nQuestion: {{ question|upper }} ({{ count }})"
        ),
        "minor",
        "messages[1] wording changed",
    ),
    (
        changed(messages=[*BASE["messages"], {"role": "assistant", "content": "OK."}]),
        "minor",
        "messages[2] added",
    ),
    (changed(messages=BASE["messages"][1:]), "minor", "messages[0] removed"),
    (changed(messages=list(reversed(BASE["messages"]))), "minor", "messages reordered"),
    (
        changed(messages=[{"role": "user", "content": SYSTEM}, BASE["messages"][1]]),
        "minor",
        "messages[0] role system -> user",
    ),
    (changed(description="Answer questions well."), "patch", "description changed"),
    (changed(description=None), "patch", "description changed"),
    (
        changed(links__rag_collection="docs-v2"),
        "patch",
        'links.rag_collection "docs" -> "docs-v2"',
    ),
    (
        changed(links__eval_dataset="golden"),
        "patch",
        'links.eval_dataset unset -> "golden"',
    ),
]


@pytest.mark.parametrize(("new", "level", "reason"), BUMP_CASES)
def test_propose_bump_level(new: PromptContent, level: str, reason: str) -> None:
    bump = propose_bump(OLD, new)
    assert bump is not None
    assert bump.level == level


@pytest.mark.parametrize(("new", "level", "reason"), BUMP_CASES)
def test_propose_bump_reasons(new: PromptContent, level: str, reason: str) -> None:
    bump = propose_bump(OLD, new)
    assert bump is not None
    assert bump.reasons == (reason,)


def test_propose_bump_equal() -> None:
    assert propose_bump(OLD, changed()) is None


def test_propose_bump_reordered_variables() -> None:
    reordered = changed(
        variables={
            "count": {"type": "integer", "default": 3},
            "audience": {"type": "string", "required": False},
            "question": "string",
            "passage": "string",
        }
    )
    assert propose_bump(OLD, reordered) is None


def test_propose_bump_reasons_highest_first() -> None:
    new = changed(
        description="Other.", model__temperature=0.5, variables__topic="string"
    )
    bump = propose_bump(OLD, new)
    assert bump is not None
    assert bump.reasons == (
        "required variable 'topic' added",
        "temperature 0.2 -> 0.5",
        "description changed",
    )


def test_propose_bump_deciding_reasons() -> None:
    new = changed(description="Other.", model__temperature=0.5, model__top_p=0.5)
    bump = propose_bump(OLD, new)
    assert bump is not None
    assert bump.deciding_reasons == ("temperature 0.2 -> 0.5", "top_p unset -> 0.5")


def test_propose_bump_to_choose_level() -> None:
    bump = propose_bump(
        OLD, changed(variables__topic={"type": "string", "required": False})
    )
    assert bump is not None
    with pytest.raises(InvalidReference) as caught:
        choose_level(bump, "patch")
    assert str(caught.value) == (
        "cannot lower the bump from minor to patch: the change needs at least "
        "minor (variable 'topic' added)"
    )


# is_small_fix

SMALL_FIXES = [
    ("Hello world.", "Hello world!", True),
    ("Hello world.", "hello   WORLD", True),
    ("Hello world", "Hello, world", True),
    ("Hello world", "Helo wrld", True),
    ("Hello world", "Hallo wurld!", True),
    ("Hello world", "Hallo welt", False),
    ("Hello world", "Hxllx wxrxd", False),
    ("Hello world", "Goodbye world", False),
    ("", "abc", True),
    ("", "abcd", False),
    ("Hi {{ name }}", "Hi {{name}}", True),
    ("Hi {{ name }}", "Hi {{ name | upper }}", False),
    ("Hi {{ a }}", "Hi {{ b }}", False),
    ("Hi {{ name }}", "Hi { name }", False),
    ("{% if a %}x{% endif %}", "{%- if a %}x{% endif %}", False),
    ("A {{ x }} B", "A B {{ x }}", False),
    ("Hi {# old note #}there", "Hi {# new note #}there", True),
    ("Grüße, Welt.", "grüsse welt", True),  # casefold turns ß into ss
    ("Grüße, Welt.", "grüße welt", True),
    ("日本語です。", "日本語です", True),
]


@pytest.mark.parametrize(("old", "new", "expected"), SMALL_FIXES)
def test_small_fix(old: str, new: str, expected: bool) -> None:
    assert is_small_fix(old, new) is expected


def test_small_fix_long_text_one_typo() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 200
    assert is_small_fix(text, text.replace("lazy", "lazzy", 1)) is True


def test_small_fix_long_text_many_edits() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 200
    assert is_small_fix(text, text.replace("lazy", "lazzy")) is False


# Labels


@pytest.mark.parametrize(
    "label",
    ["production", "canary", "a", "staging-2", "team_a", "v", "version", "a" * 63],
)
def test_label_valid(label: str) -> None:
    validate_label(label)
    # A valid label also reads back as a label in a reference.
    assert parse_reference(f"demo@{label}").label == label


def test_label_reserved() -> None:
    with pytest.raises(InvalidReference) as caught:
        validate_label("latest")
    assert str(caught.value) == (
        "label 'latest' is reserved because it always refers to the newest "
        "approved version; choose another label"
    )


@pytest.mark.parametrize("label", ["v2", "v1.4", "V3", "2", "1.4.0", "v10"])
def test_label_version_like(label: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        validate_label(label)
    assert str(caught.value) == (
        f"invalid label {label!r}: it reads as a version number, so "
        f"'name@{label}' would be ambiguous with a version; choose a label such "
        "as 'production' or 'canary'"
    )


@pytest.mark.parametrize(
    "label",
    ["", "Prod", "prod uction", "-a", "_a", "1st", "a" * 64, "a.b", "a@b", "prod\n"],
)
def test_label_invalid(label: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        validate_label(label)
    assert str(caught.value) == (
        f"invalid label {label!r}: use 1-63 lowercase letters, digits, '-' or '_', "
        "starting with a letter"
    )


# References

REFERENCES = [
    ("summarize@production", "summarize", "production", None),
    ("summarize@latest", "summarize", "latest", None),
    ("summarize@1.4.0", "summarize", None, "1.4.0"),
    ("summarize@1.4", "summarize", None, "1.4"),
    ("summarize@1", "summarize", None, "1"),
    ("summarize@v1.4.0", "summarize", None, "1.4.0"),
    ("summarize@V2", "summarize", None, "2"),
    ("summarize@0.0.0", "summarize", None, "0.0.0"),
    ("summarize", "summarize", "production", None),
    ("a.b_c-1@canary", "a.b_c-1", "canary", None),
]


@pytest.mark.parametrize(("text", "name", "label", "version"), REFERENCES)
def test_parse_reference(
    text: str, name: str, label: str | None, version: str | None
) -> None:
    assert parse_reference(text) == PromptReference(name, label, version)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("summarize", "summarize@production"),
        ("summarize@v1.4", "summarize@1.4"),
        ("summarize@canary", "summarize@canary"),
    ],
)
def test_reference_str(text: str, canonical: str) -> None:
    assert str(parse_reference(text)) == canonical


def test_parse_reference_default_label() -> None:
    assert parse_reference("summarize", default_label="staging").label == "staging"


def test_parse_reference_invalid_default_label() -> None:
    with pytest.raises(InvalidReference):
        parse_reference("summarize", default_label="v2")


INVALID_REFERENCES = [
    ("", "empty prompt reference; expected NAME, NAME@LABEL or NAME@VERSION"),
    (
        "@production",
        "invalid prompt reference '@production': the name before '@' is empty",
    ),
    (
        "summarize@",
        "invalid prompt reference 'summarize@': the label or version after '@' "
        "is empty",
    ),
    ("a@b@c", "invalid prompt reference 'a@b@c': it contains more than one '@'"),
    (
        "my prompt@production",
        "invalid prompt name 'my prompt': use 1-128 letters, digits, '.', '_' or "
        "'-', starting with a letter or digit",
    ),
    (
        "summarize@Prod",
        "invalid label 'Prod': use 1-63 lowercase letters, digits, '-' or '_', "
        "starting with a letter",
    ),
    (
        "summarize@01",
        "invalid version '01': expected MAJOR, MAJOR.MINOR or MAJOR.MINOR.PATCH, "
        "with parts of at most 9 digits and no leading zeros",
    ),
    (
        "summarize@1.2.3.4",
        "invalid version '1.2.3.4': expected MAJOR, MAJOR.MINOR or "
        "MAJOR.MINOR.PATCH, with parts of at most 9 digits and no leading zeros",
    ),
    (
        "summarize@ production",
        "invalid label ' production': use 1-63 lowercase letters, digits, '-' or "
        "'_', starting with a letter",
    ),
]


@pytest.mark.parametrize(("text", "message"), INVALID_REFERENCES)
def test_parse_reference_invalid(text: str, message: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        parse_reference(text)
    assert str(caught.value) == message


def test_reference_needs_label_or_version() -> None:
    with pytest.raises(InvalidReference):
        PromptReference("summarize", None, None)


def test_reference_not_both() -> None:
    with pytest.raises(InvalidReference):
        PromptReference("summarize", "production", "1.0.0")


# matches

MATCHES = [
    (Version(1, 4, 2), "1", True),
    (Version(1, 4, 2), "1.4", True),
    (Version(1, 4, 2), "1.4.2", True),
    (Version(1, 4, 2), "1.4.3", False),
    (Version(1, 4, 2), "1.3", False),
    (Version(1, 4, 2), "2", False),
    (Version(11, 0, 0), "1", False),
    (Version(1, 40, 0), "1.4", False),
]


@pytest.mark.parametrize(("version", "prefix", "expected"), MATCHES)
def test_matches(version: Version, prefix: str, expected: bool) -> None:
    assert matches(version, prefix) is expected


def test_matches_invalid_prefix() -> None:
    with pytest.raises(InvalidReference):
        matches(Version(1, 0, 0), "1.x")
