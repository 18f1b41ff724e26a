"""Rendering prompts: variables, request settings, the sandbox and the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keelway.prompts import sandbox as sandbox_module
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
    assert render_error(content) == CALL_DEPTH_LIMIT


# Render limits

LOOP_LIMIT = (
    "messages[0].content: the template ran more than 100000 loop iterations, "
    "the limit for one render; loop over fewer items or nest fewer loops"
)
CALL_DEPTH_LIMIT = (
    "messages[0].content: macro, block or recursive loop() calls are nested "
    "more than 50 deep; check that recursive macros and loops reach a base case"
)
OUTPUT_LIMIT = (
    "messages[0].content: the output of a macro, block, call block or set block "
    "exceeds 1000000 characters; shorten it"
)


def render_error(
    content: PromptContent, variables: dict[str, Any] | None = None
) -> str:
    with pytest.raises(TemplateError) as caught:
        Renderer().render(content, variables)
    return str(caught.value)


def too_large(length: int, operation: str) -> str:
    return (
        f"messages[0].content: the template builds a value of length {length} "
        f"with {operation}, over the limit of 1000000"
    )


def would_build(length: int, operation: str) -> str:
    return (
        f"messages[0].content: the template would build a value of about {length} "
        f"characters with {operation}, over the limit of 1000000"
    )


def over_size_limit(operation: str) -> str:
    return (
        f"messages[0].content: the template builds a value with {operation} that "
        "has more than 1000000 elements and characters in all"
    )


def test_limit_nested_range_loops() -> None:
    content = prompt(
        "{% for i in range(100000) %}{% for j in range(100000) %}"
        "{% endfor %}{% endfor %}"
    )
    assert render_error(content) == LOOP_LIMIT


def test_limit_nested_empty_loops_over_variable() -> None:
    content = prompt(
        "{% for a in items %}{% for b in items %}{% endfor %}{% endfor %}",
        items="array",
    )
    assert render_error(content, {"items": list(range(1000))}) == LOOP_LIMIT


def test_limit_char_iteration_over_variable() -> None:
    content = prompt("{% for c in text %}{% endfor %}", text="string")
    assert render_error(content, {"text": "x" * 200_000}) == LOOP_LIMIT


def test_limit_dict_iteration_over_variable() -> None:
    content = prompt(
        "{% for k, v in d.items() %}{% for k2 in d %}{% endfor %}{% endfor %}",
        d="object",
    )
    variables = {"d": {f"k{i}": i for i in range(1000)}}
    assert render_error(content, variables) == LOOP_LIMIT


def test_limit_loop_budget_exact() -> None:
    at_budget = "{% for i in range(100000) %}{% endfor %}done"
    assert render_text(prompt(at_budget), None) == "done"
    over_budget = at_budget + "{% for i in [1] %}{% endfor %}"
    assert render_error(prompt(over_budget)) == LOOP_LIMIT


def test_limit_loop_budget_shared_by_messages() -> None:
    loop = "{% for i in range(60000) %}{% endfor %}"
    content = PromptContent.from_dict(
        {
            "messages": [
                {"role": "system", "content": loop},
                {"role": "user", "content": loop},
            ]
        }
    )
    assert render_error(content) == LOOP_LIMIT.replace("[0]", "[1]")


def test_limit_loop_budget_per_render() -> None:
    content = prompt("{% for i in range(60000) %}{% endfor %}ok")
    renderer = Renderer()
    assert renderer.render(content, None).messages[0]["content"] == "ok"
    assert renderer.render(content, None).messages[0]["content"] == "ok"


def test_limit_loop_over_filter_output() -> None:
    content = prompt(
        "{% for i in range(1000) %}"
        "{% for s in range(1000) | map('string') %}{% endfor %}{% endfor %}"
    )
    assert render_error(content) == LOOP_LIMIT


def test_limit_recursive_loop_items() -> None:
    content = prompt(
        "{% for x in range(1000) recursive %}"
        "{% if loop.depth == 1 %}{{ loop(range(1000)) }}{% endif %}{% endfor %}"
    )
    assert render_error(content) == LOOP_LIMIT


def test_limit_recursive_loop_depth() -> None:
    content = prompt("{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}")
    assert render_error(content) == CALL_DEPTH_LIMIT


def test_limit_macro_recursion_without_base_case() -> None:
    # The base case never matches, so validation cannot tell.
    content = prompt(
        "{% macro f(n) %}{% if n < 0 %}end{% else %}{{ f(n + 1) }}{% endif %}"
        "{% endmacro %}{{ f(0) }}"
    )
    assert render_error(content) == CALL_DEPTH_LIMIT


def test_limit_macro_recursion_within_depth() -> None:
    content = prompt(
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{% endif %}{{ n % 10 }}"
        "{% endmacro %}{{ f(45) }}"
    )
    assert render_text(content, None) == "0123456789" * 4 + "012345"


def test_limit_block_recursion() -> None:
    content = prompt("{% block b %}{{ self.b() }}{% endblock %}")
    assert render_error(content) == CALL_DEPTH_LIMIT


def test_limit_macro_calls() -> None:
    # f(20) would make 2**21 - 1 calls, none nested more than 21 deep.
    content = prompt(
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
        "{% endmacro %}{{ f(20) }}"
    )
    assert render_error(content) == (
        "messages[0].content: the template called macros more than 20000 "
        "times, the limit for one render; call them fewer times"
    )


def test_limit_render_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # The clock is read every 16 operations, so 1000 iterations read it.
    monkeypatch.setattr(sandbox_module, "MAX_RENDER_SECONDS", 0.0)
    content = prompt("{% for i in range(1000) %}{% endfor %}")
    assert render_error(content) == (
        "messages[0].content: rendering timed out after 0.0 seconds; simplify "
        "the template's loops and macros or pass smaller variables"
    )


def test_limit_center_filter() -> None:
    content = prompt("{{ 'x' | center(10**9) }}")
    assert render_error(content) == would_build(10**9, "the center filter")


def test_limit_format_method_width() -> None:
    content = prompt("{{ '{:>1000000000}'.format(1) }}")
    assert render_error(content) == (
        "messages[0].content: the format spec '>1000000000' sets a width or "
        "precision over the limit of 1000000"
    )


def test_limit_format_method_nested_width() -> None:
    content = prompt("{{ '{:>{w}}'.format(1, w=10**9) }}")
    assert render_error(content).endswith(
        "sets a width or precision over the limit of 1000000"
    )


def test_limit_format_method_repeated_field() -> None:
    # 200000 fields of a 10-character value: 2000000 characters.
    content = prompt("{{ ('{0}' * 200000).format(q) }}", q="string")
    error = render_error(content, {"q": "x" * 10})
    assert error == over_size_limit("str.format()")


def test_limit_string_repeat_power() -> None:
    content = prompt("{{ 'a' * 10**9 }}")
    assert render_error(content) == (
        "messages[0].content: the template builds a value of length 1000000000, "
        "over the limit of 1000000"
    )


def test_limit_replace_chain() -> None:
    # Each replace doubles the a's, so the 20th would make 2**20 + 1 characters.
    content = prompt("{{ 'ab'" + " | replace('a', 'aa')" * 30 + " }}")
    assert render_error(content) == would_build(2**20 + 1, "the replace filter")


def test_limit_replace_method_empty_old() -> None:
    # Replacing '' inserts the new text before every character and at the end.
    content = prompt("{{ q.replace('', 'yy') }}", q="string")
    error = render_error(content, {"q": "x" * 400_000})
    assert error == would_build(400_000 + 2 * 400_001, "str.replace()")


SIZING_ARGUMENTS = [
    ("{{ 'a'.ljust(10**9) }}", 10**9, "str.ljust()"),
    ("{{ 'a'.rjust(10**9) }}", 10**9, "str.rjust()"),
    ("{{ 'a'.center(10**9) }}", 10**9, "str.center()"),
    ("{{ '1'.zfill(10**9) }}", 10**9, "str.zfill()"),
    ("{{ 'a'.encode().center(10**9) }}", 10**9, "bytes.center()"),
    ("{{ ('\\t' * 1000).expandtabs(10**6) }}", 1000 + 1000 * 10**6, "str.expandtabs()"),
    ("{{ ('a' * 1000).translate({97: 'b' * 10000}) }}", 10**7, "str.translate()"),
    ("{{ (1).to_bytes(10**9, 'big') }}", 10**9, "int.to_bytes()"),
    # 10**5 paragraphs of up to 101 words of up to 16 characters
    ("{{ lipsum(10**5) }}", 10**5 * 101 * 16, "lipsum()"),
    # the format's 12 characters, the width and 32 for the number
    ("{{ '%1000000000d' % 1 }}", 12 + 10**9 + 32, "%"),
    ("{{ '%1000000000d' | format(1) }}", 12 + 10**9 + 32, "the format filter"),
    # one indent before each of the two lines that splitlines can see
    ("{{ 'a' | indent(10**9) }}", 1 + 2 * 10**9, "the indent filter"),
    # up to 2 lines per character of width 1, plus 2 per paragraph
    (
        "{{ ('a ' * 400000) | wordwrap(1, wrapstring='x' * 1000) }}",
        800_000 + (2 * 800_000 + 2) * 1000,
        "the wordwrap filter",
    ),
    ("{{ [1] | batch(10**9, 0) | list }}", 10**9, "the batch filter"),
    ("{{ [1] | slice(10**9) | list }}", 10**9, "the slice filter"),
]


@pytest.mark.parametrize(("template", "length", "operation"), SIZING_ARGUMENTS)
def test_limit_sizing_arguments(template: str, length: int, operation: str) -> None:
    assert render_error(prompt(template)) == would_build(length, operation)


def test_limit_join_method() -> None:
    content = prompt("{{ '-'.join(items) }}", items="array")
    error = render_error(content, {"items": ["x" * 600_000] * 2})
    assert error == over_size_limit("str.join()")


def test_limit_join_filter() -> None:
    content = prompt("{{ items | join }}", items="array")
    error = render_error(content, {"items": ["x" * 600_000] * 2})
    assert error == over_size_limit("the join filter")


def test_limit_map_output() -> None:
    content = prompt("{{ range(100000) | map('center', 100) | join }}")
    assert render_error(content) == over_size_limit("the map filter")


def test_limit_tojson_indent() -> None:
    content = prompt("{{ [[1]] | tojson(indent=10**9) }}")
    assert render_error(content) == (
        "messages[0].content: the tojson filter's indent of 1000000000 is over "
        "the limit of 100"
    )


def test_limit_tojson_indented_output() -> None:
    # Each of the 100000 numbers gets a line indented by 100 spaces.
    content = prompt("{{ range(100000) | list | tojson(indent=100) }}")
    assert render_error(content) == over_size_limit("the tojson filter")


def test_limit_concat_in_recursive_macro() -> None:
    content = prompt(
        "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s | length }}"
        "{% endif %}{% endmacro %}{{ d('x', 40) }}"
    )
    assert render_error(content) == too_large(2**20, "~")


def test_limit_literal_doubling() -> None:
    # Each list contains the previous one twice, so its text doubles every time.
    content = prompt(
        "{% set ns = namespace(t=[1]) %}{% for i in range(60) %}"
        "{% set ns.t = [ns.t, ns.t] %}{% endfor %}"
    )
    assert render_error(content) == over_size_limit("a literal")


def test_limit_value_nesting() -> None:
    # Hashing a tuple nested this deep recurses in C and can crash CPython.
    content = prompt(
        "{% set ns = namespace(t=()) %}{% for i in range(2000) %}"
        "{% set ns.t = (ns.t,) %}{% endfor %}{{ {ns.t: 1} | length }}"
    )
    assert render_error(content) == (
        "messages[0].content: the template builds a value whose lists, tuples "
        "or dicts are nested more than 1000 deep"
    )


def test_limit_set_block_output() -> None:
    content = prompt(
        "{% set x %}{% for i in range(2000) %}{{ q }}{% endfor %}{% endset %}"
        "{{ x | length }}",
        q="string",
    )
    assert render_error(content, {"q": "y" * 1000}) == OUTPUT_LIMIT


def test_limit_macro_output() -> None:
    content = prompt(
        "{% macro m() %}{% for i in range(2000) %}{{ q }}{% endfor %}{% endmacro %}"
        "{{ m() | length }}",
        q="string",
    )
    assert render_error(content, {"q": "y" * 1000}) == OUTPUT_LIMIT


def test_limit_printed_list_of_references() -> None:
    content = prompt("{{ [q] * 100 }}", q="string")
    assert render_error(content, {"q": "x" * 100_000}) == (
        "messages[0].content: the template builds a value of length 10000100, "
        "over the limit of 1000000"
    )


def test_limit_derived_from_large_variable() -> None:
    # Looping over a large variable is allowed, but building a sorted copy is not.
    content = prompt(
        "{% for d in docs %}{% endfor %}{{ docs | length }}{{ docs | sort | first }}",
        docs="array",
    )
    docs = ["x" * 1000] * 2000
    assert render_error(content, {"docs": docs}) == over_size_limit("the sort filter")


def test_limit_normal_templates_render() -> None:
    content = prompt(
        "{% for d in docs %}{{ loop.index }}/{{ loop.length }} "
        "{{ d.title | upper }}{% if not loop.last %}, {% endif %}{% endfor %}"
        "|{% for k, v in meta | dictsort %}{{ k }}={{ v }};{% endfor %}"
        "|{% for c in 'abc' %}{{ c }}{% endfor %}"
        "|{{ docs | map(attribute='title') | join('+') }}"
        "|{{ '{:>5}'.format(n) }}|{{ '%03d' % n }}|{{ 'x' | center(5) }}"
        "|{{ [[1], [2]] | sum(start=[]) }}"
        "|{% macro item(t) %}<{{ t }}>{% endmacro %}"
        "{% for d in docs %}{{ item(d.title) }}{% endfor %}",
        docs="array",
        meta="object",
        n="integer",
    )
    variables = {
        "docs": [{"title": "alpha"}, {"title": "beta"}],
        "meta": {"b": 2, "a": 1},
        "n": 7,
    }
    assert render_text(content, variables) == (
        "1/2 ALPHA, 2/2 BETA|a=1;b=2;|abc|alpha+beta|    7|007|  x  |[1, 2]"
        "|<alpha><beta>"
    )


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
