"""Rendering prompts: variables, request settings, the sandbox and the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keelway.prompts.content import PromptContent, parse_prompt_yaml
from keelway.prompts.errors import TemplateError, VariableError
from keelway.prompts.render import Renderer, bind_variables

FIXTURES = Path(__file__).parent / "fixtures" / "prompts"

QA = PromptContent.from_dict(
    {
        "variables": {"passage": "string", "question": "string"},
        "messages": [
            {"role": "system", "content": "Answer from the passage."},
            {"role": "user", "content": "{{ passage }}\n\nQ: {{ question }}"},
        ],
    }
)


def prompt(template: str, **variables: Any) -> PromptContent:
    return PromptContent.from_dict(
        {"variables": variables, "messages": [{"role": "user", "content": template}]}
    )


def render_text(content: PromptContent, variables: dict[str, Any] | None) -> str:
    return str(Renderer().render(content, variables).messages[0]["content"])


# Messages


def test_render_messages() -> None:
    rendered = Renderer().render(QA, {"passage": "Sky is blue.", "question": "Colour?"})
    assert rendered.messages == [
        {"role": "system", "content": "Answer from the passage."},
        {"role": "user", "content": "Sky is blue.\n\nQ: Colour?"},
    ]


def test_render_no_html_escaping() -> None:
    text = render_text(prompt("{{ q }}", q="string"), {"q": '<b>Tom & "Jerry"</b>'})
    assert text == '<b>Tom & "Jerry"</b>'


def test_render_keeps_trailing_newline() -> None:
    assert render_text(prompt("{{ q }}\n", q="string"), {"q": "x"}) == "x\n"


def test_render_unicode() -> None:
    text = render_text(prompt("Grüß {{ q }} 👋", q="string"), {"q": "日本語"})
    assert text == "Grüß 日本語 👋"


def test_render_empty_template() -> None:
    assert render_text(prompt(""), None) == ""


def test_render_none_variables() -> None:
    assert render_text(prompt("static"), None) == "static"


def test_render_defaults_fill_in() -> None:
    content = prompt(
        "{{ n }} {{ items | join(',') }}",
        n={"type": "integer", "default": 3},
        items={"type": "array", "default": ["a", "b"]},
    )
    assert render_text(content, {}) == "3 a,b"


def test_render_value_overrides_default() -> None:
    content = prompt("{{ n }}", n={"type": "integer", "default": 3})
    assert render_text(content, {"n": 5}) == "5"


def test_render_optional_without_default_is_none() -> None:
    content = prompt(
        "{% if tone %}tone={{ tone }}{% else %}none{% endif %}",
        tone={"type": "string", "required": False},
    )
    assert render_text(content, {}) == "none"


def test_render_optional_explicit_null() -> None:
    content = prompt("{{ tone is none }}", tone={"type": "string", "required": False})
    assert render_text(content, {"tone": None}) == "True"


def test_render_object_and_array_values() -> None:
    content = prompt("{{ doc.title }}: {{ tags | length }}", doc="object", tags="array")
    assert render_text(content, {"doc": {"title": "T"}, "tags": [1, 2]}) == "T: 2"


def test_render_deterministic() -> None:
    content = prompt(
        "{% for k, v in d | dictsort %}{{ k }}={{ v }};{% endfor %}", d="object"
    )
    values = {"d": {"b": 2, "a": 1, "c": 3}}
    renderer = Renderer()
    assert renderer.render(content, values) == renderer.render(content, values)


def test_bind_variables_copies_default() -> None:
    content = prompt("{{ items | length }}", items={"type": "array", "default": ["a"]})
    values = bind_variables(content, {})
    values["items"].append("b")
    assert content.variables[0].default == ["a"]


def test_render_fixture_summarize() -> None:
    text = (FIXTURES / "summarize.yaml").read_text(encoding="utf-8")
    content = parse_prompt_yaml(text, "summarize.yaml")[1]
    rendered = Renderer().render(
        content, {"passage": "Prices rise in May.", "tone": "formal"}
    )
    assert rendered.messages == [
        {
            "role": "system",
            "content": "You write summaries for a senior engineer.\n"
            "Use a formal tone.\n",
        },
        {
            "role": "user",
            "content": "Summarize the passage in at most 120 words (about 25% of its "
            "length).\nMention: pricing, deadlines.\n\nPassage:\nPrices rise in May.\n",
        },
    ]


# Settings


def test_settings_full() -> None:
    content = PromptContent.from_dict(
        {
            "messages": [{"role": "user", "content": "Hi"}],
            "model": {
                "group": "fast",
                "temperature": 0.2,
                "max_tokens": 100,
                "top_p": 0.9,
                "stop": "END",
                "response_format": {"type": "json_object"},
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "extra": {"seed": 7, "tool_choice": "auto"},
            },
        }
    )
    assert Renderer().render(content, None).settings == {
        "model": "fast",
        "temperature": 0.2,
        "max_tokens": 100,
        "top_p": 0.9,
        "stop": ["END"],
        "response_format": {"type": "json_object"},
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "seed": 7,
        "tool_choice": "auto",
    }


def test_settings_empty_without_model() -> None:
    assert Renderer().render(prompt("Hi"), None).settings == {}


def test_settings_without_group_has_no_model() -> None:
    content = PromptContent.from_dict(
        {"messages": [{"role": "user", "content": "Hi"}], "model": {"temperature": 0}}
    )
    assert Renderer().render(content, None).settings == {"temperature": 0.0}


def test_settings_are_copies() -> None:
    content = PromptContent.from_dict(
        {
            "messages": [{"role": "user", "content": "Hi"}],
            "model": {"response_format": {"type": "json_object"}},
        }
    )
    settings = Renderer().render(content, None).settings
    settings["response_format"]["type"] = "text"
    assert content.model.response_format == {"type": "json_object"}


# Variable errors


def test_variables_missing() -> None:
    with pytest.raises(VariableError) as caught:
        Renderer().render(QA, {"passage": "p"})
    assert str(caught.value) == "missing variable 'question'"


def test_variables_missing_names_variable() -> None:
    with pytest.raises(VariableError) as caught:
        Renderer().render(QA, {"passage": "p"})
    assert caught.value.variable == "question"


def test_variables_unexpected() -> None:
    with pytest.raises(VariableError) as caught:
        Renderer().render(QA, {"passage": "p", "question": "q", "foo": 1})
    assert str(caught.value) == (
        "unexpected variable 'foo'; the prompt declares: passage, question"
    )


def test_variables_unexpected_names_variable() -> None:
    with pytest.raises(VariableError) as caught:
        Renderer().render(QA, {"passage": "p", "question": "q", "foo": 1})
    assert caught.value.variable == "foo"


def test_variables_unexpected_none_declared() -> None:
    with pytest.raises(VariableError) as caught:
        Renderer().render(prompt("Hi"), {"x": 1})
    assert (
        str(caught.value) == "unexpected variable 'x'; the prompt declares no variables"
    )


def test_variables_required_null() -> None:
    with pytest.raises(VariableError) as caught:
        Renderer().render(QA, {"passage": None, "question": "q"})
    assert str(caught.value) == "variable 'passage' must be a string, got null"


def test_variables_not_a_mapping() -> None:
    with pytest.raises(VariableError) as caught:
        Renderer().render(QA, ["p", "q"])  # type: ignore[arg-type]
    assert (
        str(caught.value) == "variables must be an object of names to values, got array"
    )


WRONG_TYPES = [
    ("integer", "3", "variable 'x' must be an integer, got string"),
    ("integer", True, "variable 'x' must be an integer, got boolean"),
    ("integer", 3.0, "variable 'x' must be an integer, got number"),
    ("number", False, "variable 'x' must be a number, got boolean"),
    ("number", "1.5", "variable 'x' must be a number, got string"),
    ("string", 5, "variable 'x' must be a string, got integer"),
    ("string", ["a"], "variable 'x' must be a string, got array"),
    ("boolean", 1, "variable 'x' must be a boolean, got integer"),
    ("boolean", "true", "variable 'x' must be a boolean, got string"),
    ("array", (1, 2), "variable 'x' must be an array, got tuple"),
    ("array", {"a": 1}, "variable 'x' must be an array, got object"),
    ("object", [1], "variable 'x' must be an object, got array"),
]


@pytest.mark.parametrize(("type_name", "value", "message"), WRONG_TYPES)
def test_variables_wrong_type(type_name: str, value: Any, message: str) -> None:
    with pytest.raises(VariableError) as caught:
        Renderer().render(prompt("{{ x }}", x=type_name), {"x": value})
    assert str(caught.value) == message


RIGHT_TYPES = [
    ("integer", 3, "3"),
    ("number", 3, "3"),
    ("number", 2.5, "2.5"),
    ("boolean", False, "False"),
    ("string", "", ""),
    ("array", [], "[]"),
    ("object", {}, "{}"),
]


@pytest.mark.parametrize(("type_name", "value", "text"), RIGHT_TYPES)
def test_variables_right_type(type_name: str, value: Any, text: str) -> None:
    assert render_text(prompt("{{ x }}", x=type_name), {"x": value}) == text


# Sandbox and limits

SANDBOX_ESCAPES = [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ q.__class__.__base__ }}",
    "{{ [].append(1) }}",
    "{% set d = {} %}{{ d.update(a=1) }}",
    "{{ q.encode.__self__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ q | attr('__class__') }}",
    "{{ '{0.__class__}'.format(q) }}",
    "{{ '%s' % q.__class__ }}",
    "{{ namespace.__init__ }}",
]


@pytest.mark.parametrize("template", SANDBOX_ESCAPES)
def test_sandbox_blocks_escape(template: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render_text(prompt(template, q="string"), {"q": "x"})
    assert str(caught.value) == (
        "messages[0].content: the template attempted an operation that the "
        "sandbox blocks, such as access to a private attribute or changing a "
        "value; remove it from the template"
    )


def test_sandbox_function_output_rejected() -> None:
    with pytest.raises(TemplateError) as caught:
        render_text(prompt("{{ q.format_map }}", q="string"), {"q": "x"})
    assert str(caught.value) == (
        "messages[0].content: the template outputs a function instead of a value; "
        "call it or remove it"
    )


def test_sandbox_missing_dunder_is_error() -> None:
    with pytest.raises(TemplateError) as caught:
        render_text(prompt("{{ range.__self__ }}"), None)
    assert str(caught.value).startswith("messages[0].content: rendering failed: ")


def test_sandbox_error_hides_cause() -> None:
    with pytest.raises(TemplateError) as caught:
        render_text(prompt("{{ ''.__class__ }}"), None)
    assert caught.value.__cause__ is None


def test_limit_huge_loop_output() -> None:
    content = prompt("{% for i in range(100000) %}{{ q }}{% endfor %}", q="string")
    with pytest.raises(TemplateError) as caught:
        render_text(content, {"q": "x" * 100})
    assert str(caught.value) == (
        "messages[0].content: the rendered text exceeds 1000000 characters; "
        "shorten the template or its variables"
    )


def test_limit_output_at_cap_allowed() -> None:
    content = prompt("{% for i in range(10000) %}{{ q }}{% endfor %}", q="string")
    assert len(render_text(content, {"q": "x" * 100})) == 1_000_000


def test_limit_large_variable_output() -> None:
    with pytest.raises(TemplateError) as caught:
        render_text(prompt("{{ q }}{{ q }}", q="string"), {"q": "x" * 600_000})
    assert "exceeds 1000000 characters" in str(caught.value)


def test_limit_range_too_big() -> None:
    with pytest.raises(TemplateError) as caught:
        render_text(prompt("{% for i in range(10000000) %}{% endfor %}"), None)
    assert str(caught.value).startswith("messages[0].content: rendering failed: ")


def test_limit_string_multiply() -> None:
    with pytest.raises(TemplateError) as caught:
        render_text(prompt("{{ 'a' * 100000000 }}"), None)
    assert str(caught.value) == (
        "messages[0].content: the template builds a value of length 100000000, "
        "over the limit of 1000000"
    )


def test_limit_list_multiply_reversed() -> None:
    with pytest.raises(TemplateError) as caught:
        render_text(prompt("{{ (100000000 * [1]) | length }}"), None)
    assert "builds a value of length 100000000" in str(caught.value)


def test_limit_string_concatenation() -> None:
    content = prompt("{{ (q + q) | length }}", q="string")
    with pytest.raises(TemplateError) as caught:
        render_text(content, {"q": "x" * 600_000})
    assert "builds a value of length 1200000" in str(caught.value)


def test_limit_integer_power() -> None:
    with pytest.raises(TemplateError) as caught:
        render_text(prompt("{{ 2 ** 10000000 }}"), None)
    assert str(caught.value) == (
        "messages[0].content: the template builds an integer of about 20000000 "
        "bits, over the limit of 10000"
    )


def test_limit_small_arithmetic_allowed() -> None:
    assert render_text(prompt("{{ 2 ** 10 }} {{ 'ab' * 2 }} {{ 1 + 2 }}"), None) == (
        "1024 abab 3"
    )


def test_render_expression_error() -> None:
    with pytest.raises(TemplateError) as caught:
        render_text(prompt("{{ 1 / 0 }}"), None)
    assert (
        str(caught.value) == "messages[0].content: rendering failed: division by zero"
    )


def test_render_undefined_attribute() -> None:
    with pytest.raises(TemplateError) as caught:
        render_text(prompt("{{ doc.missing }}", doc="object"), {"doc": {}})
    assert str(caught.value) == (
        "messages[0].content: rendering failed: 'dict object' has no attribute "
        "'missing'"
    )


def test_render_error_names_message_index() -> None:
    content = PromptContent.from_dict(
        {
            "messages": [
                {"role": "system", "content": "fine"},
                {"role": "user", "content": "{{ 1 / 0 }}"},
            ]
        }
    )
    with pytest.raises(TemplateError) as caught:
        Renderer().render(content, None)
    assert str(caught.value).startswith("messages[1].content: ")


def test_render_recursive_macro() -> None:
    content = prompt("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}")
    with pytest.raises(TemplateError) as caught:
        render_text(content, None)
    assert str(caught.value).startswith("messages[0].content: rendering failed: ")


# Cache


def test_cache_reuses_compiled_templates() -> None:
    renderer = Renderer()
    renderer.render(QA, {"passage": "p", "question": "q"})
    renderer.render(QA, {"passage": "p2", "question": "q2"})
    assert renderer.cache_info().hits == 1


def test_cache_shared_by_equal_templates() -> None:
    other = PromptContent(messages=QA.messages, variables=QA.variables)
    renderer = Renderer()
    renderer.render(QA, {"passage": "p", "question": "q"})
    renderer.render(other, {"passage": "p", "question": "q"})
    assert renderer.cache_info().misses == 1


def test_cache_bounded() -> None:
    renderer = Renderer(cache_size=2)
    for index in range(3):
        renderer.render(prompt(f"template {index}"), None)
    assert renderer.cache_info().currsize == 2
