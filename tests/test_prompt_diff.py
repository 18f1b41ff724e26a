"""Readable diffs between prompt contents."""

from __future__ import annotations

from typing import Any

from keelway.prompts.content import PromptContent
from keelway.prompts.diff import diff_contents

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
OLD = PromptContent.from_dict(BASE)


def edited(**sections: Any) -> PromptContent:
    data = dict(BASE)
    data.update(sections)
    return PromptContent.from_dict(data)


def body(text: str) -> list[str]:
    """Return the lines after the two header lines."""
    return text.splitlines()[2:]


def test_diff_identical() -> None:
    assert diff_contents(OLD, edited(), "qa@1.0.0", "qa.yaml") == (
        "no differences between qa@1.0.0 and qa.yaml\n"
    )


def test_diff_header() -> None:
    text = diff_contents(OLD, edited(description="Other."), "qa@1.0.0", "qa.yaml")
    assert text.splitlines()[:2] == ["--- qa@1.0.0", "+++ qa.yaml"]


def test_diff_full_example() -> None:
    new = edited(
        description="Answer.",
        variables={
            "passage": "string",
            "question": "string",
            "count": {"type": "number", "default": 5},
            "topic": "string",
        },
        messages=[
            BASE["messages"][0],
            {
                "role": "user",
                "content": "{{ passage }}\nTopic: {{ topic }}\n"
                "Question: {{ question }} ({{ count }})",
            },
            {"role": "assistant", "content": "OK."},
        ],
        model={
            "group": "fast",
            "temperature": 0.7,
            "response_format": {"type": "json_schema", "json_schema": {"name": "a"}},
            "extra": {"seed": 1, "top_k": 3},
        },
        links={"rag_collection": "docs-v2"},
    )
    assert diff_contents(OLD, new, "qa@1.0.0", "qa.yaml") == (
        "--- qa@1.0.0\n"
        "+++ qa.yaml\n"
        "variables:\n"
        "- count: integer, default 3\n"
        "+ count: number, default 5\n"
        "- audience: string, optional\n"
        "+ topic: string, required\n"
        "messages[1] (user): changed\n"
        "@@ -1,2 +1,3 @@\n"
        " {{ passage }}\n"
        "+Topic: {{ topic }}\n"
        " Question: {{ question }} ({{ count }})\n"
        "messages[2] (assistant): added\n"
        "+OK.\n"
        "model.temperature: 0.2 -> 0.7\n"
        "model.extra.top_k: unset -> 3\n"
        "model.response_format: changed\n"
        "@@ -1,3 +1,6 @@\n"
        " {\n"
        '-  "type": "json_object"\n'
        '+  "json_schema": {\n'
        '+    "name": "a"\n'
        "+  },\n"
        '+  "type": "json_schema"\n'
        " }\n"
        'links.rag_collection: "docs" -> "docs-v2"\n'
        'description: "Answer questions." -> "Answer."\n'
    )


def test_diff_message_removed() -> None:
    new = edited(messages=[BASE["messages"][1]], variables=BASE["variables"])
    assert body(diff_contents(OLD, new, "a", "b")) == [
        "messages[0] (system): removed",
        "-You answer from the passage only.",
    ]


def test_diff_message_role_only() -> None:
    new = edited(
        messages=[
            {"role": "user", "content": BASE["messages"][0]["content"]},
            BASE["messages"][1],
        ]
    )
    assert body(diff_contents(OLD, new, "a", "b")) == [
        "messages[0] (system -> user): role changed"
    ]


def test_diff_message_role_and_text() -> None:
    new = edited(
        messages=[{"role": "user", "content": "Be brief."}, BASE["messages"][1]]
    )
    assert body(diff_contents(OLD, new, "a", "b")) == [
        "messages[0] (system -> user): changed",
        "@@ -1 +1 @@",
        "-You answer from the passage only.",
        "+Be brief.",
    ]


def test_diff_trailing_newline_visible() -> None:
    new = edited(
        messages=[
            {"role": "system", "content": "You answer from the passage only.\n"},
            BASE["messages"][1],
        ]
    )
    assert body(diff_contents(OLD, new, "a", "b")) == [
        "messages[0] (system): changed",
        "@@ -1 +1,2 @@",
        " You answer from the passage only.",
        "+",
    ]


def test_diff_carriage_return_visible() -> None:
    new = edited(
        messages=[{"role": "system", "content": "A\r\nB"}, BASE["messages"][1]]
    )
    lines = body(diff_contents(OLD, new, "a", "b"))
    assert "+A\\r" in lines


def test_diff_tools_added() -> None:
    model = dict(BASE["model"], tools=[{"type": "function", "function": {"name": "f"}}])
    assert body(diff_contents(OLD, edited(model=model), "a", "b")) == [
        "model.tools: changed",
        "@@ -0,0 +1,8 @@",
        "+[",
        "+  {",
        '+    "function": {',
        '+      "name": "f"',
        "+    },",
        '+    "type": "function"',
        "+  }",
        "+]",
    ]


def test_diff_setting_removed() -> None:
    model = {key: value for key, value in BASE["model"].items() if key != "group"}
    assert body(diff_contents(OLD, edited(model=model), "a", "b")) == [
        'model.group: "fast" -> unset'
    ]


def test_diff_stop_list() -> None:
    model = dict(BASE["model"], stop=["\n\n", "END"])
    assert body(diff_contents(OLD, edited(model=model), "a", "b")) == [
        'model.stop: unset -> ["\\n\\n", "END"]'
    ]


def test_diff_variable_description() -> None:
    variables = dict(
        BASE["variables"], question={"type": "string", "description": "Q."}
    )
    assert body(diff_contents(OLD, edited(variables=variables), "a", "b")) == [
        "variables:",
        "- question: string, required",
        '+ question: string, required, description "Q."',
    ]


def test_diff_link_added() -> None:
    links = {"rag_collection": "docs", "guardrail_policy": "strict"}
    assert body(diff_contents(OLD, edited(links=links), "a", "b")) == [
        'links.guardrail_policy: unset -> "strict"'
    ]


def test_diff_unicode_text() -> None:
    new = edited(
        messages=[
            {"role": "system", "content": "Antworte auf Deutsch 🙂"},
            BASE["messages"][1],
        ]
    )
    lines = body(diff_contents(OLD, new, "a", "b"))
    assert "+Antworte auf Deutsch 🙂" in lines


def test_diff_no_colour_codes() -> None:
    new = edited(description="Other.", model=dict(BASE["model"], temperature=1.0))
    assert "\x1b" not in diff_contents(OLD, new, "a", "b")


def test_diff_ends_with_newline() -> None:
    assert diff_contents(OLD, edited(description="Other."), "a", "b").endswith(
        '"Other."\n'
    )
