"""Readable differences between two prompt contents, field by field.

The output is plain text. Lines that start with ``+`` or ``-`` are additions
and removals (apart from the ``---``/``+++`` header), so a terminal may colour
them.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from keelway.prompts.content import Message, PromptContent, Variable

_SETTINGS = ("group", "temperature", "max_tokens", "top_p", "stop")
_JSON_SETTINGS = ("response_format", "tools")


def diff_contents(
    old: PromptContent, new: PromptContent, old_name: str, new_name: str
) -> str:
    """Return the differences from ``old`` to ``new`` as text.

    The ``--- old_name`` and ``+++ new_name`` header comes first, then the
    changed variables, messages (with a unified diff of changed text), model
    settings, links and description. Identical contents give a single line.
    """
    if old.content_hash() == new.content_hash():
        return f"no differences between {old_name} and {new_name}\n"
    lines = [f"--- {old_name}", f"+++ {new_name}"]
    lines += _variable_lines(old.variables, new.variables)
    lines += _message_lines(old.messages, new.messages)
    lines += _model_lines(old, new)
    lines += _value_lines("links", old.links.to_dict(), new.links.to_dict())
    if old.description != new.description:
        lines.append(
            f"description: {_show(old.description)} -> {_show(new.description)}"
        )
    return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    """Format a value as JSON, or ``unset`` for None."""
    if value is None:
        return "unset"
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _describe_variable(variable: Variable) -> str:
    text = f"{variable.name}: {variable.type}"
    if variable.default is not None:
        text += f", default {_show(variable.default)}"
    elif variable.required:
        text += ", required"
    else:
        text += ", optional"
    if variable.description is not None:
        text += f", description {_show(variable.description)}"
    return text


def _variable_lines(old: tuple[Variable, ...], new: tuple[Variable, ...]) -> list[str]:
    old_by_name = {variable.name: variable for variable in old}
    new_by_name = {variable.name: variable for variable in new}
    names = list(old_by_name) + [
        name for name in new_by_name if name not in old_by_name
    ]
    lines: list[str] = []
    for name in names:
        before, after = old_by_name.get(name), new_by_name.get(name)
        described_before = _describe_variable(before) if before is not None else None
        described_after = _describe_variable(after) if after is not None else None
        if described_before == described_after:
            continue
        if described_before is not None:
            lines.append(f"- {described_before}")
        if described_after is not None:
            lines.append(f"+ {described_after}")
    return ["variables:", *lines] if lines else []


def _text_lines(text: str) -> list[str]:
    """Split on \\n only, so a changed trailing newline shows as a line, and
    show a carriage return as ``\\r`` so that it is visible."""
    return [line.replace("\r", "\\r") for line in text.split("\n")]


def _unified(old_lines: list[str], new_lines: list[str]) -> list[str]:
    """Return the hunks of a unified diff, without its file header lines."""
    diff = list(difflib.unified_diff(old_lines, new_lines, lineterm="", n=3))
    return diff[2:]


def _message_lines(old: tuple[Message, ...], new: tuple[Message, ...]) -> list[str]:
    lines: list[str] = []
    old_keys = [(message.role, message.content) for message in old]
    new_keys = [(message.role, message.content) for message in new]
    matcher = difflib.SequenceMatcher(None, old_keys, new_keys, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        # Pair replaced messages by position and report the surplus as
        # removed or added.
        paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        for offset in range(paired):
            lines += _changed_message_lines(
                old[i1 + offset], new[j1 + offset], j1 + offset
            )
        for index in range(i1 + paired, i2):
            lines.append(f"messages[{index}] ({old[index].role}): removed")
            lines += [f"-{line}" for line in _text_lines(old[index].content)]
        for index in range(j1 + paired, j2):
            lines.append(f"messages[{index}] ({new[index].role}): added")
            lines += [f"+{line}" for line in _text_lines(new[index].content)]
    return lines


def _changed_message_lines(before: Message, after: Message, index: int) -> list[str]:
    role = before.role
    if before.role != after.role:
        role = f"{before.role} -> {after.role}"
    if before.content == after.content:
        return [f"messages[{index}] ({role}): role changed"]
    hunks = _unified(_text_lines(before.content), _text_lines(after.content))
    return [f"messages[{index}] ({role}): changed", *hunks]


def _model_lines(old: PromptContent, new: PromptContent) -> list[str]:
    old_model, new_model = old.model.to_dict(), new.model.to_dict()
    lines = _value_lines(
        "model",
        {key: old_model.get(key) for key in _SETTINGS},
        {key: new_model.get(key) for key in _SETTINGS},
    )
    lines += _value_lines("model.extra", old.model.extra, new.model.extra)
    for key in _JSON_SETTINGS:
        before, after = old_model.get(key), new_model.get(key)
        if _show(before) == _show(after):
            continue
        lines.append(f"model.{key}: changed")
        lines += _unified(_json_lines(before), _json_lines(after))
    return lines


def _json_lines(value: Any) -> list[str]:
    if value is None:
        return []
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).split("\n")


def _value_lines(prefix: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Return ``prefix.key: OLD -> NEW`` for each key whose value differs."""
    lines = []
    keys = list(old) + [key for key in new if key not in old]
    for key in keys:
        before, after = _show(old.get(key)), _show(new.get(key))
        if before != after:
            lines.append(f"{prefix}.{key}: {before} -> {after}")
    return lines
