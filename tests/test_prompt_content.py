"""Prompt content: validation, canonical dict form, hashing and YAML."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from keelway.prompts.content import (
    Links,
    Message,
    ModelSettings,
    PromptContent,
    Variable,
    dump_prompt_yaml,
    parse_prompt_yaml,
    type_mismatch,
    validate_prompt_name,
)
from keelway.prompts.errors import InvalidPrompt, InvalidReference

USER_HI = [{"role": "user", "content": "Hi"}]


def content_with(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"messages": USER_HI}
    data.update(fields)
    return data


def single_message(text: str, **fields: Any) -> PromptContent:
    return PromptContent.from_dict(
        {"messages": [{"role": "user", "content": text}], **fields}
    )


# from_dict


def test_from_dict_minimal_messages() -> None:
    content = PromptContent.from_dict({"messages": USER_HI})
    assert content.messages == (Message("user", "Hi"),)


def test_from_dict_minimal_defaults() -> None:
    content = PromptContent.from_dict({"messages": USER_HI})
    assert content.variables == ()
    assert content.model == ModelSettings()
    assert content.links == Links()
    assert content.description is None


def test_from_dict_variable_shorthand() -> None:
    content = PromptContent.from_dict(content_with(variables={"q": "integer"}))
    assert content.variables == (Variable("q", "integer"),)


def test_from_dict_variable_default_is_optional() -> None:
    content = PromptContent.from_dict(
        content_with(variables={"n": {"type": "integer", "default": 3}})
    )
    assert content.variables[0].required is False


def test_from_dict_variable_missing_type_is_string() -> None:
    content = PromptContent.from_dict(content_with(variables={"q": {}}))
    assert content.variables[0].type == "string"


def test_from_dict_variable_required_false() -> None:
    content = PromptContent.from_dict(
        content_with(variables={"tone": {"type": "string", "required": False}})
    )
    assert content.variables[0] == Variable("tone", required=False)


def test_from_dict_keeps_variable_order() -> None:
    content = PromptContent.from_dict(
        content_with(variables={"b": "string", "a": "string"})
    )
    assert [variable.name for variable in content.variables] == ["b", "a"]


def test_from_dict_template_globals_allowed() -> None:
    content = single_message(
        "{% for i in range(2) %}{{ loop.index }}{{ i }}{% endfor %}"
        "{{ lipsum(1) | length > 0 }}"
    )
    assert len(content.messages) == 1


def test_from_dict_template_local_names_allowed() -> None:
    content = single_message(
        "{% set x = 1 %}{{ x }}{% macro m(a) %}{{ a }}{% endmacro %}{{ m(2) }}"
    )
    assert len(content.messages) == 1


def test_from_dict_unused_variable_allowed() -> None:
    content = single_message("Hi", variables={"unused": "string"})
    assert content.variables[0].name == "unused"


def test_from_dict_stop_string_becomes_tuple() -> None:
    content = PromptContent.from_dict(content_with(model={"stop": "END"}))
    assert content.model.stop == ("END",)


def test_from_dict_integer_temperature_becomes_float() -> None:
    content = PromptContent.from_dict(content_with(model={"temperature": 1}))
    assert isinstance(content.model.temperature, float)


def test_from_dict_empty_description_is_unset() -> None:
    content = PromptContent.from_dict(content_with(description=""))
    assert content.description is None


def test_from_dict_empty_group_is_unset() -> None:
    content = PromptContent.from_dict(content_with(model={"group": ""}))
    assert content.model.group is None


def test_from_dict_null_sections_are_unset() -> None:
    content = PromptContent.from_dict(
        content_with(variables=None, model=None, links=None, description=None)
    )
    assert content == PromptContent.from_dict(content_with())


INVALID_CONTENTS = [
    (
        {"messages": USER_HI, "prompt": "x"},
        "unknown key 'prompt'; allowed keys: description, variables, messages, "
        "model, links",
    ),
    (
        {"messages": USER_HI, "a": 1, "b": 2},
        "unknown keys 'a', 'b'; allowed keys: description, variables, messages, "
        "model, links",
    ),
    ({}, "messages: missing; add at least one message"),
    ({"messages": []}, "messages: must contain at least one message"),
    ({"messages": "Hi"}, "messages: must be a list of messages, got string"),
    (
        {"messages": ["Hi"]},
        "messages[0]: must be a mapping with role and content, got string",
    ),
    (
        {"messages": [{"role": "user", "content": "Hi", "name": "bob"}]},
        "messages[0]: unknown key 'name'; allowed keys: role, content",
    ),
    ({"messages": [{"role": "user"}]}, "messages[0].content: missing"),
    ({"messages": [{"content": "Hi"}]}, "messages[0].role: missing"),
    (
        {"messages": [*USER_HI, {"role": "user", "content": 5}]},
        "messages[1].content: must be a string, got integer",
    ),
    (
        {"messages": [{"role": "bot", "content": "Hi"}]},
        "messages[0].role: must be one of system, user, assistant, got 'bot'",
    ),
    (
        {"messages": [{"role": "user", "content": "{{ question }}"}]},
        "messages[0].content: uses undeclared variable 'question'; declare it "
        "under variables",
    ),
    (
        {"messages": [{"role": "user", "content": "{{ b }}{{ a }}"}]},
        "messages[0].content: uses undeclared variables 'a', 'b'; declare them "
        "under variables",
    ),
    (
        {"messages": [{"role": "user", "content": "{% include 'other' %}"}]},
        "messages[0].content: line 1: {% include %} is not supported because "
        "each message is a single template",
    ),
    (
        {"messages": [{"role": "user", "content": "{% extends 'base' %}"}]},
        "messages[0].content: line 1: {% extends %} is not supported because "
        "each message is a single template",
    ),
    (
        content_with(variables=["q"]),
        "variables: must be a mapping of variable names to types or definitions, "
        "got array",
    ),
    (
        content_with(variables={"count": {"type": "int"}}),
        "variables.count.type: must be one of string, integer, number, boolean, "
        "array, object, got 'int'",
    ),
    (
        content_with(variables={"count": "int"}),
        "variables.count.type: must be one of string, integer, number, boolean, "
        "array, object, got 'int'",
    ),
    (
        content_with(variables={"count": None}),
        "variables.count: must be a type name such as string, or a mapping with "
        "type, required, default and description; got null",
    ),
    (
        content_with(variables={"count": {"type": "integer", "kind": "x"}}),
        "variables.count: unknown key 'kind'; allowed keys: type, required, "
        "default, description",
    ),
    (
        content_with(variables={"count": {"type": "integer", "default": "3"}}),
        "variables.count.default: must be an integer, got string",
    ),
    (
        content_with(variables={"count": {"type": "integer", "default": True}}),
        "variables.count.default: must be an integer, got boolean",
    ),
    (
        content_with(variables={"ratio": {"type": "number", "default": False}}),
        "variables.ratio.default: must be a number, got boolean",
    ),
    (
        content_with(
            variables={"x": {"type": "integer", "default": 1, "required": True}}
        ),
        "variables.x.required: a variable with a default is optional; remove "
        "required or the default",
    ),
    (
        content_with(variables={"x": {"required": "yes"}}),
        "variables.x.required: must be true or false, got string",
    ),
    (
        content_with(variables={"x": {"description": 5}}),
        "variables.x.description: must be a string, got integer",
    ),
    (
        content_with(variables={"2x": "string"}),
        "variables: invalid variable name '2x': use 1-64 letters, digits or '_', "
        "starting with a letter or '_'",
    ),
    (
        content_with(variables={"my-var": "string"}),
        "variables: invalid variable name 'my-var': use 1-64 letters, digits or "
        "'_', starting with a letter or '_'",
    ),
    (
        content_with(variables={"range": "string"}),
        "variables: variable name 'range' is reserved by Python or Jinja2 "
        "templates; choose another name",
    ),
    (
        content_with(variables={"loop": "string"}),
        "variables: variable name 'loop' is reserved by Python or Jinja2 "
        "templates; choose another name",
    ),
    (
        content_with(variables={"class": "string"}),
        "variables: variable name 'class' is reserved by Python or Jinja2 "
        "templates; choose another name",
    ),
    (
        content_with(model={"temprature": 0.2}),
        "model: unknown key 'temprature'; allowed keys: group, temperature, "
        "max_tokens, top_p, stop, response_format, tools, extra",
    ),
    (content_with(model=[]), "model: must be a mapping, got array"),
    (
        content_with(model={"temperature": 3}),
        "model.temperature: must be between 0 and 2, got 3",
    ),
    (
        content_with(model={"temperature": -0.1}),
        "model.temperature: must be between 0 and 2, got -0.1",
    ),
    (
        content_with(model={"temperature": True}),
        "model.temperature: must be a number, got boolean",
    ),
    (
        content_with(model={"temperature": "0.2"}),
        "model.temperature: must be a number, got string",
    ),
    (
        content_with(model={"top_p": 1.5}),
        "model.top_p: must be between 0 and 1, got 1.5",
    ),
    (
        content_with(model={"max_tokens": 0}),
        "model.max_tokens: must be at least 1, got 0",
    ),
    (
        content_with(model={"max_tokens": 1.5}),
        "model.max_tokens: must be an integer, got number",
    ),
    (content_with(model={"group": 5}), "model.group: must be a string, got integer"),
    (content_with(model={"stop": [""]}), "model.stop[0]: must not be empty"),
    (
        content_with(model={"stop": 5}),
        "model.stop: must be a string or a list of strings, got integer",
    ),
    (
        content_with(model={"response_format": {"json_schema": {}}}),
        "model.response_format: must have a string 'type', such as 'json_schema' "
        "or 'function'",
    ),
    (
        content_with(model={"response_format": "json"}),
        "model.response_format: must be an object, got string",
    ),
    (
        content_with(model={"tools": {"type": "function"}}),
        "model.tools: must be a list of tool objects, got object",
    ),
    (
        content_with(model={"tools": [{"function": {}}]}),
        "model.tools[0]: must have a string 'type', such as 'json_schema' or "
        "'function'",
    ),
    (
        content_with(model={"extra": {"stream": True}}),
        "model.extra.stream: is set by each request, so a prompt cannot fix it; "
        "remove it",
    ),
    (
        content_with(model={"extra": {"messages": []}}),
        "model.extra.messages: is set by each request, so a prompt cannot fix it; "
        "remove it",
    ),
    (
        content_with(model={"extra": {"model": "gpt-4o"}}),
        "model.extra.model: is set by each request, so a prompt cannot fix it; "
        "remove it",
    ),
    (
        content_with(model={"extra": {"temperature": 0.2}}),
        "model.extra.temperature: set temperature directly under model, not "
        "under extra",
    ),
    (
        content_with(model={"extra": {"seed": None}}),
        "model.extra.seed: must not be null; remove the key to leave it unset",
    ),
    (
        content_with(model={"extra": {"Seed": 1}}),
        "model.extra: invalid request field name 'Seed': use lowercase letters, "
        "digits and '_'",
    ),
    (
        content_with(model={"extra": {"logit_bias": {"50256": float("nan")}}}),
        "model.extra.logit_bias.50256: must be a finite number, got nan; JSON has "
        "no NaN or infinity",
    ),
    (
        content_with(model={"extra": {"metadata": {1: "a"}}}),
        "model.extra.metadata: object keys must be strings, got 1",
    ),
    (
        content_with(model={"extra": {"seed": (1, 2)}}),
        "model.extra.seed: must be JSON data, got tuple; quote the value if it is "
        "meant as a string",
    ),
    (
        content_with(links={"rag": "docs"}),
        "links: unknown key 'rag'; allowed keys: rag_collection, "
        "guardrail_policy, eval_dataset",
    ),
    (
        content_with(links={"rag_collection": 1}),
        "links.rag_collection: must be a string, got integer",
    ),
    (content_with(description=7), "description: must be a string, got integer"),
    (
        {"messages": [{"role": "user", "content": "a\ud800b"}]},
        "messages[0].content: contains a lone surrogate at index 1, which is not "
        "valid Unicode text; remove it",
    ),
]


@pytest.mark.parametrize(("data", "message"), INVALID_CONTENTS)
def test_from_dict_invalid(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidPrompt) as caught:
        PromptContent.from_dict(data)
    assert str(caught.value) == message


def test_from_dict_syntax_error_names_line() -> None:
    with pytest.raises(InvalidPrompt) as caught:
        single_message("line one\n{{ 1 + }}")
    assert str(caught.value).startswith(
        "messages[0].content: template syntax error on line 2: "
    )


def test_from_dict_error_has_path() -> None:
    with pytest.raises(InvalidPrompt) as caught:
        PromptContent.from_dict(content_with(model={"temperature": 3}))
    assert caught.value.path == "model.temperature"


def test_from_dict_not_a_mapping() -> None:
    with pytest.raises(InvalidPrompt) as caught:
        PromptContent.from_dict(["x"])  # type: ignore[arg-type]
    assert str(caught.value) == "a prompt must be a mapping, got array"


def test_from_dict_deep_default_rejected() -> None:
    deep: Any = "leaf"
    for _ in range(40):
        deep = [deep]
    with pytest.raises(InvalidPrompt) as caught:
        PromptContent.from_dict(
            content_with(variables={"x": {"type": "array", "default": deep}})
        )
    assert "is nested more than 32 levels deep" in str(caught.value)


def nested_loops(depth: int) -> str:
    return "{% for a in [1] %}" * depth + "x" + "{% endfor %}" * depth


def test_from_dict_loop_nesting_at_limit() -> None:
    content = single_message(nested_loops(5))
    assert content.messages[0].content == nested_loops(5)


def test_from_dict_loop_nesting_over_limit() -> None:
    data = {"messages": [*USER_HI, {"role": "user", "content": nested_loops(6)}]}
    with pytest.raises(InvalidPrompt) as caught:
        PromptContent.from_dict(data)
    assert str(caught.value) == (
        "messages[1].content: line 1: for loops are nested more than 5 deep; "
        "flatten the loops or loop over fewer levels of data"
    )
    assert caught.value.path == "messages[1].content"


def test_from_dict_loop_nesting_names_line() -> None:
    with pytest.raises(InvalidPrompt) as caught:
        single_message("intro\n\n" + nested_loops(6))
    assert str(caught.value).startswith("messages[0].content: line 3: ")


def test_from_dict_loop_nesting_counts_text_only() -> None:
    # A loop in a macro that a loop calls, and a loop in an else branch, are
    # not nested in that loop, so each of these nests at most 5 deep.
    macro = "{% macro m() %}" + nested_loops(3) + "{% endmacro %}"
    calls = "{% for a in [1] %}" * 3 + "{{ m() }}" + "{% endfor %}" * 3
    loop_else = "{% for a in [] %}{% else %}" + nested_loops(5) + "{% endfor %}"
    content = single_message(macro + calls + loop_else)
    assert len(content.messages) == 1


def test_from_dict_filter_constants_not_run() -> None:
    # Jinja2 folds constant expressions while compiling. Filters no longer
    # fold, so creating this version does not build a 10**9-character string.
    content = single_message("{{ 'x' | center(1000000000) }}")
    assert len(content.messages) == 1


# Direct construction


def test_construct_duplicate_variable() -> None:
    with pytest.raises(InvalidPrompt) as caught:
        PromptContent(
            messages=(Message("user", "Hi"),),
            variables=(Variable("a"), Variable("a", "integer")),
        )
    assert str(caught.value) == "variables.a: declared twice"


def test_construct_lists_become_tuples() -> None:
    content = PromptContent(messages=[Message("user", "Hi")])  # type: ignore[arg-type]
    assert content.messages == (Message("user", "Hi"),)


def test_construct_wrong_message_type() -> None:
    with pytest.raises(InvalidPrompt) as caught:
        PromptContent(messages=({"role": "user", "content": "Hi"},))  # type: ignore[arg-type]
    assert str(caught.value) == "messages[0]: must be a Message, got dict"


def test_construct_variable_default_not_required() -> None:
    assert Variable("n", "integer", default=3).required is False


def test_construct_message_bad_role() -> None:
    with pytest.raises(InvalidPrompt) as caught:
        Message("tool", "x")
    assert (
        str(caught.value) == "role: must be one of system, user, assistant, got 'tool'"
    )


def test_construct_settings_empty_stop_unset() -> None:
    assert ModelSettings(stop=()).stop is None


def test_construct_settings_empty_tools_unset() -> None:
    assert ModelSettings(tools=()).tools is None


def test_construct_links_empty_unset() -> None:
    assert Links(rag_collection="").rag_collection is None


def test_type_mismatch_text() -> None:
    assert type_mismatch("object", [1]) == "must be an object, got array"


def test_type_mismatch_accepts_int_as_number() -> None:
    assert type_mismatch("number", 3) is None


# to_dict and content_hash

FULL = {
    "links": {"eval_dataset": "golden", "rag_collection": "docs"},
    "model": {
        "extra": {"seed": 7},
        "stop": "END",
        "temperature": 0.2,
        "group": "fast",
    },
    "messages": [{"content": "{{ q }} {{ n }} {{ tone }}", "role": "user"}],
    "variables": {
        "q": "string",
        "n": {"default": 3, "type": "integer"},
        "tone": {"required": False, "description": "Tone."},
    },
    "description": "Demo.",
}


def test_to_dict_key_order() -> None:
    data = PromptContent.from_dict(FULL).to_dict()
    assert list(data) == ["description", "variables", "messages", "model", "links"]


def test_to_dict_model_key_order() -> None:
    data = PromptContent.from_dict(FULL).to_dict()
    assert list(data["model"]) == ["group", "temperature", "stop", "extra"]


def test_to_dict_links_key_order() -> None:
    data = PromptContent.from_dict(FULL).to_dict()
    assert list(data["links"]) == ["rag_collection", "eval_dataset"]


def test_to_dict_variables_full_form() -> None:
    data = PromptContent.from_dict(FULL).to_dict()
    assert data["variables"] == {
        "q": {"type": "string"},
        "n": {"type": "integer", "default": 3},
        "tone": {"type": "string", "required": False, "description": "Tone."},
    }


def test_to_dict_omits_unset() -> None:
    data = PromptContent.from_dict({"messages": USER_HI}).to_dict()
    assert data == {"messages": [{"role": "user", "content": "Hi"}]}


def test_to_dict_keeps_empty_content() -> None:
    data = single_message("").to_dict()
    assert data["messages"] == [{"role": "user", "content": ""}]


def test_to_dict_round_trips() -> None:
    content = PromptContent.from_dict(FULL)
    assert PromptContent.from_dict(content.to_dict()) == content


def test_to_dict_returns_copies() -> None:
    content = PromptContent.from_dict(FULL)
    content.to_dict()["model"]["extra"]["seed"] = 8
    assert content.model.extra == {"seed": 7}


def test_content_hash_hand_checked() -> None:
    canonical = (
        '{"messages":[{"content":"Grüß {{ q }}","role":"user"}],'
        '"variables":{"q":{"type":"string"}}}'
    )
    expected = "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    content = single_message("Grüß {{ q }}", variables={"q": "string"})
    assert content.content_hash() == expected


def test_content_hash_ignores_yaml_formatting() -> None:
    block = """
name: demo
variables:
  q:
    type: string
messages:
- role: user
  content: "Hello {{ q }}"
model:
  temperature: 0.5
"""
    flow = """
name: demo
model: {temperature: 0.50}
messages: [{content: 'Hello {{ q }}', role: user}]
variables: {q: string}
"""
    first = parse_prompt_yaml(block, "block.yaml")[1]
    second = parse_prompt_yaml(flow, "flow.yaml")[1]
    assert first.content_hash() == second.content_hash()


def test_content_hash_changes_with_temperature() -> None:
    first = PromptContent.from_dict(content_with(model={"temperature": 0.2}))
    second = PromptContent.from_dict(content_with(model={"temperature": 0.3}))
    assert first.content_hash() != second.content_hash()


def test_content_hash_format() -> None:
    digest = single_message("Hi").content_hash()
    assert len(digest.removeprefix("sha256:")) == 64


# parse_prompt_yaml

DEMO_YAML = """\
name: demo
variables:
  q: string
messages:
- role: user
  content: Hello {{ q }}
"""


def test_parse_yaml_name() -> None:
    assert parse_prompt_yaml(DEMO_YAML, "demo.yaml")[0] == "demo"


def test_parse_yaml_content() -> None:
    content = parse_prompt_yaml(DEMO_YAML, "demo.yaml")[1]
    assert content == single_message("Hello {{ q }}", variables={"q": "string"})


INVALID_YAML = [
    (
        "name: demo\nmessages:\n- role: user\n  content: Hi\n"
        "- role: user\n  content: 5\n",
        "demo.yaml: messages[1].content: must be a string, got integer",
    ),
    ("", "demo.yaml: the document is empty; expected a mapping with name and messages"),
    ("- a\n", "demo.yaml: must be a mapping with name and messages, got array"),
    (
        "messages: [{role: user, content: Hi}]\n",
        "demo.yaml: name: missing; set it to the prompt's name",
    ),
    (
        "name: 5\nmessages: [{role: user, content: Hi}]\n",
        "demo.yaml: name: must be a string, got integer",
    ),
    (
        "name: my prompt\nmessages: [{role: user, content: Hi}]\n",
        "demo.yaml: name: invalid prompt name 'my prompt': use 1-128 letters, "
        "digits, '.', '_' or '-', starting with a letter or digit",
    ),
    (
        "name: demo\nversion: 2\nmessages: [{role: user, content: Hi}]\n",
        "demo.yaml: unknown key 'version'; allowed keys: name, description, "
        "variables, messages, model, links",
    ),
    (
        "name: demo\nvariables: {when: {type: string, default: 2024-01-01}}\n"
        "messages: [{role: user, content: Hi}]\n",
        "demo.yaml: variables.when.default: must be JSON data, got date; quote the "
        "value if it is meant as a string",
    ),
]


@pytest.mark.parametrize(("text", "message"), INVALID_YAML)
def test_parse_yaml_invalid(text: str, message: str) -> None:
    with pytest.raises(InvalidPrompt) as caught:
        parse_prompt_yaml(text, "demo.yaml")
    assert str(caught.value) == message


def test_parse_yaml_syntax_error_position() -> None:
    text = "name: demo\nmessages:\n  - role: user\n   content: [unclosed\n"
    with pytest.raises(InvalidPrompt) as caught:
        parse_prompt_yaml(text, "demo.yaml")
    assert str(caught.value).startswith("demo.yaml: invalid YAML at line 4, column ")


def test_parse_yaml_duplicate_variable() -> None:
    text = (
        "name: demo\nvariables:\n  q: string\n  q: integer\n"
        "messages: [{role: user, content: Hi}]\n"
    )
    with pytest.raises(InvalidPrompt) as caught:
        parse_prompt_yaml(text, "demo.yaml")
    assert str(caught.value) == (
        "demo.yaml: invalid YAML at line 4, column 3: found duplicate key 'q'"
    )


def test_parse_yaml_where_attribute() -> None:
    with pytest.raises(InvalidPrompt) as caught:
        parse_prompt_yaml("- a\n", "demo.yaml")
    assert caught.value.where == "demo.yaml"


def test_parse_yaml_alias_bomb() -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for index in range(1, 9):
        previous = chr(ord("a") + index - 1)
        current = chr(ord("a") + index)
        levels.append(f"{current}: &{current} [{', '.join(['*' + previous] * 10)}]")
    text = (
        "name: demo\n"
        "variables:\n  bomb:\n    type: object\n    default:\n"
        + "".join(f"      {line}\n" for line in levels)
        + "messages: [{role: user, content: Hi}]\n"
    )
    with pytest.raises(InvalidPrompt) as caught:
        parse_prompt_yaml(text, "bomb.yaml")
    assert "has more than 100000 values" in str(caught.value)


def test_parse_yaml_self_reference() -> None:
    text = (
        "name: demo\nvariables:\n  loopy: {type: array, default: &a [*a]}\n"
        "messages: [{role: user, content: Hi}]\n"
    )
    with pytest.raises(InvalidPrompt) as caught:
        parse_prompt_yaml(text, "loop.yaml")
    assert "is nested more than 32 levels deep" in str(caught.value)


def test_parse_yaml_rejects_python_tags() -> None:
    text = (
        "name: demo\ndescription: !!python/object/apply:os.system [echo]\n"
        "messages: []\n"
    )
    with pytest.raises(InvalidPrompt) as caught:
        parse_prompt_yaml(text, "evil.yaml")
    assert str(caught.value).startswith("evil.yaml: invalid YAML at line 2")


def test_parse_yaml_crlf_text() -> None:
    text = DEMO_YAML.replace("\n", "\r\n")
    assert parse_prompt_yaml(text, "demo.yaml") == parse_prompt_yaml(
        DEMO_YAML, "demo.yaml"
    )


# dump_prompt_yaml

ROUND_TRIP_STRINGS = [
    "plain text",
    "",
    " ",
    "line one\nline two",
    "ends with newline\n",
    "two trailing newlines\n\n",
    "\n\nleading newlines",
    "  leading spaces\nsecond",
    "\tleading tab\nsecond",
    "tab\tinside\nsecond",
    "trailing spaces   \nsecond",
    "trailing space at end \nsecond ",
    "blank line with spaces\n   \nafter",
    "crlf\r\nline",
    "lone cr\rline",
    "emoji 😀 and 日本語\nzweite Zeile: ü",
    "line separator\u2028inside",
    "nbsp\u00a0\nline",
    "yes",
    "no",
    "on",
    "null",
    "~",
    "true",
    "1.0",
    "1e3",
    "0x1F",
    "2024-01-01",
    "- looks like a list",
    "key: value",
    "# looks like a comment",
    "'single' and \"double\" quotes",
    "{ starts with a brace }",
    "[starts with a bracket]",
    "%percent",
    "@at",
    "`backtick",
    "ends with colon:",
    "\n",
    "\n\n\n",
    "x" * 500 + " " + "y" * 500,
]


def full_content(text: str) -> PromptContent:
    return PromptContent.from_dict(
        {
            "description": text or None,
            "variables": {"v": {"type": "string", "default": text or "d"}},
            "messages": [
                {"role": "system", "content": text},
                {"role": "user", "content": "after"},
            ],
            "model": {"stop": [text or "s"], "extra": {"metadata": {"note": text}}},
        }
    )


@pytest.mark.parametrize("text", ROUND_TRIP_STRINGS)
def test_dump_yaml_round_trip(text: str) -> None:
    content = full_content(text)
    assert parse_prompt_yaml(dump_prompt_yaml("demo", content), "demo.yaml") == (
        "demo",
        content,
    )


@pytest.mark.parametrize("text", ROUND_TRIP_STRINGS)
def test_dump_yaml_last_value_round_trip(text: str) -> None:
    # The last scalar of a document needs care with trailing newlines.
    content = single_message(text)
    assert parse_prompt_yaml(dump_prompt_yaml("demo", content), "demo.yaml") == (
        "demo",
        content,
    )


@pytest.mark.parametrize("text", ROUND_TRIP_STRINGS)
def test_dump_yaml_stable(text: str) -> None:
    dumped = dump_prompt_yaml("demo", full_content(text))
    again = dump_prompt_yaml(*parse_prompt_yaml(dumped, "demo.yaml"))
    assert again == dumped


def test_dump_yaml_literal_block() -> None:
    text = dump_prompt_yaml("demo", single_message("line one\nline two\n"))
    assert "  content: |\n    line one\n    line two\n" in text


def test_dump_yaml_block_strip_chomping() -> None:
    text = dump_prompt_yaml("demo", single_message("line one\nline two"))
    assert "  content: |-\n    line one\n    line two\n" in text


def test_dump_yaml_trailing_spaces_double_quoted() -> None:
    text = dump_prompt_yaml("demo", single_message("a  \nb"))
    assert '  content: "a  \\nb"\n' in text


def test_dump_yaml_crlf_double_quoted() -> None:
    text = dump_prompt_yaml("demo", single_message("a\r\nb"))
    assert '  content: "a\\r\\nb"\n' in text


def test_dump_yaml_blank_lines_double_quoted() -> None:
    text = dump_prompt_yaml("demo", single_message("\n\n"))
    assert '  content: "\\n\\n"\n' in text


@pytest.mark.parametrize("text", ["yes", "1.0", "null", "true", "~", "2024-01-01"])
def test_dump_yaml_quotes_ambiguous(text: str) -> None:
    dumped = dump_prompt_yaml("demo", single_message(text))
    assert f"  content: '{text}'\n" in dumped


def test_dump_yaml_keeps_unicode() -> None:
    text = dump_prompt_yaml("demo", single_message("Grüße 😀"))
    assert "content: Grüße 😀\n" in text


def test_dump_yaml_long_line_not_folded() -> None:
    long_text = " ".join(["word"] * 400)
    text = dump_prompt_yaml("demo", single_message(long_text))
    assert f"  content: {long_text}\n" in text


def test_dump_yaml_no_aliases() -> None:
    shared = {"type": "object", "properties": {}}
    content = PromptContent(
        messages=(Message("user", "Hi"),),
        model=ModelSettings(
            response_format={"type": "json_schema", "schema": shared},
            tools=({"type": "function", "parameters": shared},),
        ),
    )
    text = dump_prompt_yaml("demo", content)
    assert "&id" not in text


def test_dump_yaml_key_order() -> None:
    text = dump_prompt_yaml("demo", PromptContent.from_dict(FULL))
    top_keys = [line.split(":")[0] for line in text.splitlines() if line[:1].isalpha()]
    assert top_keys == [
        "name",
        "description",
        "variables",
        "messages",
        "model",
        "links",
    ]


def test_dump_yaml_exact_text() -> None:
    text = dump_prompt_yaml("demo", PromptContent.from_dict(FULL))
    assert text == (
        "name: demo\n"
        "description: Demo.\n"
        "variables:\n"
        "  q:\n"
        "    type: string\n"
        "  n:\n"
        "    type: integer\n"
        "    default: 3\n"
        "  tone:\n"
        "    type: string\n"
        "    required: false\n"
        "    description: Tone.\n"
        "messages:\n"
        "- role: user\n"
        "  content: '{{ q }} {{ n }} {{ tone }}'\n"
        "model:\n"
        "  group: fast\n"
        "  temperature: 0.2\n"
        "  stop:\n"
        "  - END\n"
        "  extra:\n"
        "    seed: 7\n"
        "links:\n"
        "  rag_collection: docs\n"
        "  eval_dataset: golden\n"
    )


def test_dump_yaml_invalid_name() -> None:
    with pytest.raises(InvalidReference):
        dump_prompt_yaml("a/b", single_message("Hi"))


# validate_prompt_name


@pytest.mark.parametrize(
    "name", ["a", "Z9", "summarize.v2", "my_prompt-1", "1.0", "123", "yes", "a" * 128]
)
def test_prompt_name_valid(name: str) -> None:
    validate_prompt_name(name)
    # A valid name also survives the YAML round trip, even where YAML would
    # read it as a number or boolean.
    dumped = dump_prompt_yaml(name, single_message("Hi"))
    assert parse_prompt_yaml(dumped, "x.yaml")[0] == name


@pytest.mark.parametrize(
    "name",
    ["", "-a", ".a", "_a", "a b", "a@b", "a/b", "a\\b", "é", "a" * 129, "a\n"],
)
def test_prompt_name_invalid(name: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        validate_prompt_name(name)
    assert str(caught.value).startswith(f"invalid prompt name {name!r}: ")
