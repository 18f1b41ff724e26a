"""Semantic versions, bump proposals, labels and references of prompts.

A prompt version is ``MAJOR.MINOR.PATCH``. ``propose_bump`` picks the level
from what changed: the variables or the output contract (major), wording or
model settings (minor), or a small text fix, the description or links
(patch). A reference names a prompt and a label or version, such as
``summarize@production`` or ``summarize@1.4``.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any

from keelway.prompts.content import (
    Message,
    PromptContent,
    Variable,
    validate_prompt_name,
)
from keelway.prompts.errors import InvalidReference
from keelway.prompts.sandbox import template_environment

BUMP_LEVELS = ("patch", "minor", "major")
RESERVED_LABELS = ("latest",)

# Maximum characters changed, counted over difflib opcodes, for a message
# edit to count as a small fix.
SMALL_FIX_MAX_CHARS = 3

_VERSION = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")
_VERSION_PREFIX = re.compile(r"(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){0,2}")
_LABEL = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_VERSION_LIKE = re.compile(r"v?[0-9]+(\.[0-9]+)*", re.IGNORECASE)
# Jinja2 lexer tokens that do not change a template's output.
_IGNORED_TOKENS = frozenset({"whitespace", "comment_begin", "comment", "comment_end"})

_LEXER = template_environment()


@dataclass(frozen=True, order=True)
class Version:
    """A semantic version of a prompt. Versions sort numerically by part."""

    major: int
    minor: int
    patch: int

    def __post_init__(self) -> None:
        for part in (self.major, self.minor, self.patch):
            if isinstance(part, bool) or not isinstance(part, int) or part < 0:
                raise InvalidReference(
                    f"version parts must be integers of 0 or more, got {part!r}"
                )

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse exactly ``MAJOR.MINOR.PATCH``, each part without leading zeros."""
        match = _VERSION.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise InvalidReference(
                f"invalid version {text!r}: expected MAJOR.MINOR.PATCH such as "
                "1.4.0, with parts of at most 9 digits and no leading zeros"
            )
        return cls(int(match[1]), int(match[2]), int(match[3]))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


FIRST_VERSION = Version(1, 0, 0)


@dataclass(frozen=True)
class Bump:
    """A proposed version bump and the changes behind it.

    ``reasons`` lists every change, those of the highest level first.
    ``deciding_reasons`` are the changes that set ``level``.
    """

    level: str
    reasons: tuple[str, ...]
    deciding_reasons: tuple[str, ...] = ()


def _level_rank(level: str) -> int:
    if level not in BUMP_LEVELS:
        raise InvalidReference(
            f"unknown bump level {level!r}; use patch, minor or major"
        )
    return BUMP_LEVELS.index(level)


def next_version(previous: Version | None, level: str) -> Version:
    """Return the version after ``previous`` at ``level``, or 1.0.0 after None."""
    rank = _level_rank(level)
    if previous is None:
        return FIRST_VERSION
    if rank == 2:
        return Version(previous.major + 1, 0, 0)
    if rank == 1:
        return Version(previous.major, previous.minor + 1, 0)
    return Version(previous.major, previous.minor, previous.patch + 1)


def choose_level(proposed: Bump, requested: str | None) -> str:
    """Return the bump level to apply: ``requested`` if given, else the proposal.

    The author may raise the proposed level but not lower it, so a lower
    request raises InvalidReference that quotes the deciding changes.
    """
    if requested is None:
        return proposed.level
    if _level_rank(requested) >= _level_rank(proposed.level):
        return requested
    because = proposed.deciding_reasons or proposed.reasons
    raise InvalidReference(
        f"cannot lower the bump from {proposed.level} to {requested}: the change "
        f"needs at least {proposed.level} ({'; '.join(because)})"
    )


# Bump proposals


def propose_bump(old: PromptContent, new: PromptContent) -> Bump | None:
    """Propose the bump from ``old`` to ``new``, or return None if nothing changed.

    Major: a variable added as required, removed, retyped, made required or
    given another default, or a changed response_format or tools. Minor: an
    optional variable added, a required variable made optional, message
    wording, roles or order, or other model settings. Patch: a small text fix
    (see ``is_small_fix``), variable descriptions, the description or links.
    """
    if old.content_hash() == new.content_hash():
        return None
    changes: list[tuple[str, str]] = []
    changes += _variable_changes(old.variables, new.variables)
    changes += _message_changes(old.messages, new.messages)
    changes += _model_changes(old, new)
    if old.description != new.description:
        changes.append(("patch", "description changed"))
    old_links, new_links = old.links.to_dict(), new.links.to_dict()
    for key in sorted(old_links.keys() | new_links.keys()):
        before, after = _show(old_links.get(key)), _show(new_links.get(key))
        if before != after:
            changes.append(("patch", f"links.{key} {before} -> {after}"))
    if not changes:
        # Unreachable while every field above is compared, but a new field
        # missing from the comparison must still lead to a new version.
        changes.append(("patch", "canonical form changed"))
    top = max(_level_rank(level) for level, _reason in changes)
    ordered = sorted(changes, key=lambda change: -_level_rank(change[0]))
    return Bump(
        level=BUMP_LEVELS[top],
        reasons=tuple(reason for _level, reason in ordered),
        deciding_reasons=tuple(
            reason for level, reason in ordered if _level_rank(level) == top
        ),
    )


def _show(value: Any) -> str:
    """Format a setting value for a reason: JSON, or ``unset`` for None."""
    if value is None:
        return "unset"
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _variable_changes(
    old: tuple[Variable, ...], new: tuple[Variable, ...]
) -> list[tuple[str, str]]:
    changes: list[tuple[str, str]] = []
    old_by_name = {variable.name: variable for variable in old}
    new_by_name = {variable.name: variable for variable in new}
    for name in old_by_name:
        if name not in new_by_name:
            changes.append(("major", f"variable {name!r} removed"))
    for name, after in new_by_name.items():
        before_or_none = old_by_name.get(name)
        if before_or_none is None:
            if after.required:
                changes.append(("major", f"required variable {name!r} added"))
            else:
                changes.append(("minor", f"variable {name!r} added"))
            continue
        before = before_or_none
        if before.type != after.type:
            changes.append(
                ("major", f"variable {name!r} type {before.type} -> {after.type}")
            )
        if before.required and not after.required:
            changes.append(("minor", f"variable {name!r} now optional"))
        elif after.required and not before.required:
            changes.append(("major", f"variable {name!r} now required"))
        elif not after.required and _show(before.default) != _show(after.default):
            # Callers that leave the variable out now get another value.
            changes.append(
                (
                    "major",
                    f"variable {name!r} default {_show(before.default)} -> "
                    f"{_show(after.default)}",
                )
            )
        if before.description != after.description:
            changes.append(("patch", f"variable {name!r} description changed"))
    return changes


def _message_changes(
    old: tuple[Message, ...], new: tuple[Message, ...]
) -> list[tuple[str, str]]:
    if old == new:
        return []
    old_keys = [(message.role, message.content) for message in old]
    new_keys = [(message.role, message.content) for message in new]
    if len(old) > 1 and sorted(old_keys) == sorted(new_keys):
        return [("minor", "messages reordered")]
    changes: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(None, old_keys, new_keys, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        # Pair replaced messages by position and report the surplus as
        # removed or added.
        paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        for offset in range(paired):
            changes += _paired_message_changes(
                old[i1 + offset], new[j1 + offset], j1 + offset
            )
        for index in range(i1 + paired, i2):
            changes.append(("minor", f"messages[{index}] removed"))
        for index in range(j1 + paired, j2):
            changes.append(("minor", f"messages[{index}] added"))
    return changes


def _paired_message_changes(
    before: Message, after: Message, index: int
) -> list[tuple[str, str]]:
    changes: list[tuple[str, str]] = []
    if before.role != after.role:
        changes.append(
            ("minor", f"messages[{index}] role {before.role} -> {after.role}")
        )
    if before.content != after.content:
        if is_small_fix(before.content, after.content):
            changes.append(("patch", f"messages[{index}] small text fix"))
        else:
            changes.append(("minor", f"messages[{index}] wording changed"))
    return changes


def _model_changes(old: PromptContent, new: PromptContent) -> list[tuple[str, str]]:
    changes: list[tuple[str, str]] = []
    old_model, new_model = old.model.to_dict(), new.model.to_dict()
    for key in ("response_format", "tools"):
        if _show(old_model.get(key)) != _show(new_model.get(key)):
            changes.append(("major", f"{key} changed"))
    settings = ("group", "temperature", "max_tokens", "top_p", "stop")
    for key in settings:
        before, after = _show(old_model.get(key)), _show(new_model.get(key))
        if before != after:
            changes.append(("minor", f"{key} {before} -> {after}"))
    old_extra, new_extra = old.model.extra, new.model.extra
    for key in sorted(old_extra.keys() | new_extra.keys()):
        before, after = _show(old_extra.get(key)), _show(new_extra.get(key))
        if before != after:
            changes.append(("minor", f"{key} {before} -> {after}"))
    return changes


def is_small_fix(old: str, new: str) -> bool:
    """Return whether a template edit is a small fix rather than a rewording.

    The Jinja2 tags must stay the same, apart from whitespace and comments.
    The literal text between them may then differ only in whitespace, case
    and punctuation, or by at most SMALL_FIX_MAX_CHARS characters changed in
    total as difflib's opcodes count them.
    """
    old_split, new_split = _split_template(old), _split_template(new)
    if old_split is None or new_split is None:
        return False
    old_code, old_texts = old_split
    new_code, new_texts = new_split
    if old_code != new_code or len(old_texts) != len(new_texts):
        return False
    pairs = list(zip(old_texts, new_texts, strict=True))
    if all(_normalize_text(a) == _normalize_text(b) for a, b in pairs):
        return True
    budget = SMALL_FIX_MAX_CHARS
    for before, after in pairs:
        budget -= _changed_chars(before, after, budget)
        if budget < 0:
            return False
    return True


def _split_template(
    source: str,
) -> tuple[list[tuple[str, str]], list[str]] | None:
    """Split a template into its code tokens and the literal text between them.

    Returns None when the template does not lex.
    """
    code: list[tuple[str, str]] = []
    texts = [""]
    try:
        tokens = list(_LEXER.lex(source))
    except Exception:  # noqa: BLE001 - any lexer failure means "not a small fix"
        return None
    for _line, kind, value in tokens:
        if kind == "data":
            texts[-1] += value
        elif kind not in _IGNORED_TOKENS:
            code.append((kind, value))
            texts.append("")
    return code, texts


def _normalize_text(text: str) -> str:
    """Drop whitespace and punctuation and fold case."""
    return "".join(
        char
        for char in text.casefold()
        if not char.isspace() and not unicodedata.category(char).startswith("P")
    )


def _changed_chars(old: str, new: str, limit: int) -> int:
    """Count the characters changed from ``old`` to ``new`` by difflib opcodes.

    Returns ``limit + 1`` early when a cheap bound already exceeds ``limit``.
    """
    if old == new:
        return 0
    if abs(len(old) - len(new)) > limit:
        return limit + 1
    # Each changed character removes at most one character and adds at most
    # one, so a larger multiset difference means more than ``limit`` changes.
    old_counts, new_counts = Counter(old), Counter(new)
    spread = sum((old_counts - new_counts).values()) + sum(
        (new_counts - old_counts).values()
    )
    if spread > 2 * limit:
        return limit + 1
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    changed = 0
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            changed += max(i2 - i1, j2 - j1)
    return changed


# Labels and references


def validate_label(label: str) -> None:
    """Raise InvalidReference unless ``label`` can be assigned to a version.

    A label is 1-63 lowercase letters, digits, ``-`` or ``_`` starting with a
    letter. It must not be reserved and must not read as a version, such as
    ``v2``, because ``name@v2`` would then be ambiguous.
    """
    if not isinstance(label, str):
        raise InvalidReference(f"a label must be a string, got {label!r}")
    if _VERSION_LIKE.fullmatch(label):
        raise InvalidReference(
            f"invalid label {label!r}: it reads as a version number, so "
            f"'name@{label}' would be ambiguous with a version; choose a label "
            "such as 'production' or 'canary'"
        )
    if label in RESERVED_LABELS:
        raise InvalidReference(
            f"label {label!r} is reserved because it always refers to the newest "
            "approved version; choose another label"
        )
    if _LABEL.fullmatch(label) is None:
        raise InvalidReference(
            f"invalid label {label!r}: use 1-63 lowercase letters, digits, '-' or "
            "'_', starting with a letter"
        )


@dataclass(frozen=True)
class PromptReference:
    """A prompt name with either a label or a version.

    ``version`` is a full version (``1.4.0``) or a prefix (``1.4`` or ``1``)
    that selects the newest matching version.
    """

    name: str
    label: str | None
    version: str | None

    def __post_init__(self) -> None:
        if (self.label is None) == (self.version is None):
            raise InvalidReference(
                f"a reference to prompt {self.name!r} needs exactly one of a label "
                "or a version"
            )

    def __str__(self) -> str:
        return f"{self.name}@{self.label if self.label is not None else self.version}"


def parse_reference(text: str, default_label: str = "production") -> PromptReference:
    """Parse ``NAME``, ``NAME@LABEL`` or ``NAME@VERSION`` into a reference.

    A version may be full (``1.4.0``) or a prefix (``1.4``, ``1``), with an
    optional leading ``v``. A bare name refers to ``default_label``. The
    reserved label ``latest`` is accepted as a reference.
    """
    if not isinstance(text, str) or not text:
        raise InvalidReference(
            "empty prompt reference; expected NAME, NAME@LABEL or NAME@VERSION"
        )
    if text.count("@") > 1:
        raise InvalidReference(
            f"invalid prompt reference {text!r}: it contains more than one '@'"
        )
    name, has_at, selector = text.partition("@")
    if not name:
        raise InvalidReference(
            f"invalid prompt reference {text!r}: the name before '@' is empty"
        )
    validate_prompt_name(name)
    if not has_at:
        _check_reference_label(default_label)
        return PromptReference(name=name, label=default_label, version=None)
    if not selector:
        raise InvalidReference(
            f"invalid prompt reference {text!r}: the label or version after '@' "
            "is empty"
        )
    if _VERSION_LIKE.fullmatch(selector):
        version = selector[1:] if selector[0] in "vV" else selector
        _check_version_prefix(version)
        return PromptReference(name=name, label=None, version=version)
    _check_reference_label(selector)
    return PromptReference(name=name, label=selector, version=None)


def _check_reference_label(label: str) -> None:
    if label not in RESERVED_LABELS:
        validate_label(label)


def _check_version_prefix(prefix: str) -> None:
    if _VERSION_PREFIX.fullmatch(prefix) is None:
        raise InvalidReference(
            f"invalid version {prefix!r}: expected MAJOR, MAJOR.MINOR or "
            "MAJOR.MINOR.PATCH, with parts of at most 9 digits and no leading zeros"
        )


def matches(version: Version, prefix: str) -> bool:
    """Return whether ``version`` starts with ``prefix`` (``1``, ``1.4``, ``1.4.0``)."""
    _check_version_prefix(prefix)
    parts = tuple(int(part) for part in prefix.split("."))
    return (version.major, version.minor, version.patch)[: len(parts)] == parts
