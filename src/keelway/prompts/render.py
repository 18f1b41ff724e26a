"""Render prompt content into an OpenAI chat request's messages and settings."""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import Template
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError

from keelway.prompts.content import (
    ModelSettings,
    PromptContent,
    json_type_name,
    type_mismatch,
)
from keelway.prompts.errors import TemplateError, VariableError
from keelway.prompts.sandbox import (
    MAX_RENDERED_CHARS,
    RenderBudget,
    template_environment,
)

DEFAULT_CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """A rendered prompt as OpenAI chat request fields.

    ``messages`` are ``{"role", "content"}`` dicts. ``settings`` contains
    ``model`` (only when the prompt sets a group), the sampling settings, the
    ``extra`` fields and nothing that is unset.
    """

    messages: list[dict[str, Any]]
    settings: dict[str, Any]


class Renderer:
    """A prompt renderer that runs templates in Jinja2's immutable sandbox.

    Compiled templates are kept in an LRU cache keyed by the message template
    sources, so prompts that share templates share the entry. The cache is
    thread-safe and rendering never awaits.
    """

    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self._environment = template_environment()
        self._compile = functools.lru_cache(maxsize=cache_size)(self._compile_all)

    def render(
        self, content: PromptContent, variables: Mapping[str, Any] | None
    ) -> RenderedPrompt:
        """Render every message of ``content`` with the request's variables.

        Raises VariableError when a variable is missing, undeclared or of the
        wrong type, and TemplateError when a template fails, its output
        exceeds MAX_RENDERED_CHARS characters or it passes one of the render
        limits, which all messages of the prompt share.
        """
        values = bind_variables(content, variables)
        try:
            templates = self._compile(
                tuple(message.content for message in content.messages)
            )
        except (SyntaxError, RecursionError, JinjaTemplateError) as exc:
            # PromptContent checks that its templates compile, so only content
            # stored before that check can fail here.
            raise TemplateError(
                f"the prompt's templates failed to compile: {exc}; "
                "propose a version with less deeply nested templates"
            ) from None
        messages = []
        with RenderBudget():
            for index, (message, template) in enumerate(
                zip(content.messages, templates, strict=True)
            ):
                path = f"messages[{index}].content"
                text = _render_template(template, values, path)
                messages.append({"role": message.role, "content": text})
        return RenderedPrompt(
            messages=messages, settings=_request_settings(content.model)
        )

    def cache_info(self) -> functools._CacheInfo:
        """Return the hits, misses and size of the compiled template cache."""
        return self._compile.cache_info()

    def _compile_all(self, sources: tuple[str, ...]) -> tuple[Template, ...]:
        return tuple(self._environment.from_string(source) for source in sources)


def bind_variables(
    content: PromptContent, variables: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Check request variables against the declared ones and fill in defaults.

    ``None`` counts as no variables. An optional variable without a default
    that the request leaves out, or passes as None, is bound to None.
    Raises VariableError naming the first offending variable.
    """
    if variables is None:
        variables = {}
    if not isinstance(variables, Mapping):
        raise VariableError(
            "variables must be an object of names to values, got "
            f"{json_type_name(variables)}",
            variable="",
        )
    declared = {variable.name: variable for variable in content.variables}
    for name in variables:
        if name not in declared:
            names = ": " + ", ".join(declared) if declared else " no variables"
            raise VariableError(
                f"unexpected variable {name!r}; the prompt declares{names}",
                variable=str(name),
            )
    values: dict[str, Any] = {}
    for name, variable in declared.items():
        value = variables.get(name)
        if value is None:
            if variable.required and name in variables:
                raise VariableError(
                    f"variable {name!r} {type_mismatch(variable.type, None)}",
                    variable=name,
                )
            if variable.required:
                raise VariableError(f"missing variable {name!r}", variable=name)
            values[name] = copy.deepcopy(variable.default)
            continue
        problem = type_mismatch(variable.type, value)
        if problem is not None:
            raise VariableError(f"variable {name!r} {problem}", variable=name)
        values[name] = value
    return values


def _render_template(template: Template, values: dict[str, Any], path: str) -> str:
    """Render one template, stopping once the output passes MAX_RENDERED_CHARS."""
    parts: list[str] = []
    size = 0
    try:
        for chunk in template.generate(values):
            size += len(chunk)
            if size > MAX_RENDERED_CHARS:
                break
            parts.append(chunk)
    except TemplateError as exc:
        # Raised by the sandbox's render limits and on printed functions.
        raise TemplateError(f"{path}: {exc}") from None
    except SecurityError:
        # The sandbox's own message names Python attributes and types, which
        # the template author does not need and a caller should not see.
        raise TemplateError(
            f"{path}: the template attempted an operation that the sandbox "
            "blocks, such as access to a private attribute or changing a value; "
            "remove it from the template"
        ) from None
    except Exception as exc:
        # Template expressions can raise almost anything (TypeError,
        # UndefinedError, ZeroDivisionError).
        raise TemplateError(f"{path}: rendering failed: {exc}") from exc
    if size > MAX_RENDERED_CHARS:
        raise TemplateError(
            f"{path}: the rendered text exceeds {MAX_RENDERED_CHARS} characters; "
            "shorten the template or its variables"
        )
    return "".join(parts)


def _request_settings(model: ModelSettings) -> dict[str, Any]:
    """Return the OpenAI request fields that ``model`` sets, as fresh copies."""
    settings: dict[str, Any] = {}
    if model.group is not None:
        settings["model"] = model.group
    for key in ("temperature", "max_tokens", "top_p"):
        value = getattr(model, key)
        if value is not None:
            settings[key] = value
    if model.stop is not None:
        settings["stop"] = list(model.stop)
    if model.response_format is not None:
        settings["response_format"] = copy.deepcopy(model.response_format)
    if model.tools is not None:
        settings["tools"] = [copy.deepcopy(tool) for tool in model.tools]
    settings.update(copy.deepcopy(model.extra))
    return settings
