"""Prompt content: messages, variables, model settings and links.

A ``PromptContent`` is what one prompt version stores. Its dict form
(``to_dict``) is canonical: the content hash, the YAML files and the store all
derive from it. Message contents are Jinja2 templates that run in a sandbox
(see ``keelway.prompts.sandbox``).

The YAML form of a prompt is the dict form with the prompt's name first::

    name: summarize
    description: Summarize a passage for a reader.
    variables:
      passage: string
      max_words: {type: integer, default: 120}
    messages:
    - role: system
      content: You summarize text.
    - role: user
      content: "Summarize in at most {{ max_words }} words: {{ passage }}"
    model: {group: fast, temperature: 0.2, extra: {seed: 7}}
    links: {rag_collection: handbook}
"""

from __future__ import annotations

import copy
import hashlib
import json
import keyword
import math
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import yaml
from jinja2 import meta, nodes
from jinja2.exceptions import TemplateSyntaxError

from keelway.prompts.errors import InvalidPrompt, InvalidReference
from keelway.prompts.sandbox import MAX_LOOP_NESTING, template_environment

VARIABLE_TYPES = ("string", "integer", "number", "boolean", "array", "object")
ROLES = ("system", "user", "assistant")

_CONTENT_KEYS = ("description", "variables", "messages", "model", "links")
_VARIABLE_KEYS = ("type", "required", "default", "description")
_MESSAGE_KEYS = ("role", "content")
_MODEL_KEYS = (
    "group",
    "temperature",
    "max_tokens",
    "top_p",
    "stop",
    "response_format",
    "tools",
    "extra",
)
_LINK_KEYS = ("rag_collection", "guardrail_policy", "eval_dataset")
# The gateway sets these request fields itself, so a prompt must not.
_REQUEST_OWNED_FIELDS = ("messages", "model", "stream")

_PROMPT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_EXTRA_FIELD_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
# Names a template cannot use as variables: Python keywords, Jinja2 literals,
# the globals of the template environment and the for-loop variable.
_RESERVED_VARIABLE_NAMES = frozenset(
    [*keyword.kwlist, "true", "false", "none", "loop"]
    + ["range", "dict", "lipsum", "cycler", "joiner", "namespace"]
)

# Deeper or larger JSON values are rejected, which also stops YAML alias bombs
# and self-referencing YAML structures from expanding during validation.
_MAX_JSON_DEPTH = 32
_MAX_JSON_NODES = 100_000

_TYPE_PHRASES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
}


_ENVIRONMENT = template_environment()
_TEMPLATE_GLOBALS = frozenset(_ENVIRONMENT.globals)


# Value checks shared by the dataclasses


def json_type_name(value: Any) -> str:
    """Return the JSON type name of ``value`` (``string``, ``null``, ...).

    Values that have no JSON type get their Python type name, such as ``date``.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def type_mismatch(type_name: str, value: Any) -> str | None:
    """Return why ``value`` is not of the variable type ``type_name``, or None.

    A boolean is neither an integer nor a number, and a number accepts
    integers. The text reads like ``must be an integer, got string``.
    """
    if type_name == "string":
        matches = isinstance(value, str)
    elif type_name == "integer":
        matches = isinstance(value, int) and not isinstance(value, bool)
    elif type_name == "number":
        matches = isinstance(value, int | float) and not isinstance(value, bool)
    elif type_name == "boolean":
        matches = isinstance(value, bool)
    elif type_name == "array":
        matches = isinstance(value, list)
    elif type_name == "object":
        matches = isinstance(value, dict)
    else:
        raise ValueError(f"unknown variable type {type_name!r}")
    if matches:
        return None
    return f"must be {_TYPE_PHRASES[type_name]}, got {json_type_name(value)}"


def _join_path(prefix: str, path: str) -> str:
    if not path:
        return prefix
    if not prefix:
        return path
    if path.startswith("["):
        return prefix + path
    return f"{prefix}.{path}"


@contextmanager
def _within(prefix: str) -> Iterator[None]:
    """Prefix the field path of an InvalidPrompt raised inside the block."""
    try:
        yield
    except InvalidPrompt as exc:
        raise InvalidPrompt(
            exc.problem, _join_path(prefix, exc.path), exc.where
        ) from None


def _check_text(value: Any, path: str, *, empty_ok: bool = True) -> str:
    if not isinstance(value, str):
        raise InvalidPrompt(f"must be a string, got {json_type_name(value)}", path)
    if not empty_ok and not value:
        raise InvalidPrompt("must not be empty", path)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidPrompt(
            f"contains a lone surrogate at index {exc.start}, which is not valid "
            "Unicode text; remove it",
            path,
        ) from None
    return value


def _check_optional_text(value: Any, path: str) -> str | None:
    """Check an optional non-empty string. An empty string counts as unset."""
    if value is None or value == "":
        return None
    return _check_text(value, path)


def _check_json(value: Any, path: str) -> None:
    """Raise InvalidPrompt unless ``value`` is JSON data within the size limits."""
    nodes_seen = 0
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, item_path, depth = stack.pop()
        nodes_seen += 1
        if nodes_seen > _MAX_JSON_NODES:
            raise InvalidPrompt(
                f"has more than {_MAX_JSON_NODES} values; make it smaller", path
            )
        if depth > _MAX_JSON_DEPTH:
            raise InvalidPrompt(
                f"is nested more than {_MAX_JSON_DEPTH} levels deep", item_path
            )
        if item is None or isinstance(item, bool | int):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidPrompt(
                    f"must be a finite number, got {item}; JSON has no NaN or infinity",
                    item_path,
                )
        elif isinstance(item, str):
            _check_text(item, item_path)
        elif isinstance(item, list):
            for index, element in enumerate(item):
                stack.append((element, f"{item_path}[{index}]", depth + 1))
        elif isinstance(item, dict):
            for key, element in item.items():
                if not isinstance(key, str):
                    raise InvalidPrompt(
                        f"object keys must be strings, got {key!r}", item_path
                    )
                stack.append((element, _join_path(item_path, key), depth + 1))
        else:
            raise InvalidPrompt(
                f"must be JSON data, got {json_type_name(item)}; quote the value "
                "if it is meant as a string",
                item_path,
            )


def _check_number(value: Any, path: str, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPrompt(f"must be a number, got {json_type_name(value)}", path)
    if not low <= value <= high:
        raise InvalidPrompt(f"must be between {low} and {high}, got {value}", path)
    return float(value)


def _check_keys(data: Mapping[Any, Any], allowed: tuple[str, ...], path: str) -> None:
    for key in data:
        if not isinstance(key, str):
            raise InvalidPrompt(f"keys must be strings, got {key!r}", path)
    unknown = [key for key in data if key not in allowed]
    if unknown:
        names = ", ".join(repr(key) for key in unknown)
        noun = "key" if len(unknown) == 1 else "keys"
        raise InvalidPrompt(
            f"unknown {noun} {names}; allowed keys: {', '.join(allowed)}", path
        )


def validate_prompt_name(name: str) -> None:
    """Raise InvalidReference unless ``name`` is a valid prompt name.

    A name doubles as a file name, so it has 1-128 letters, digits, ``.``,
    ``_`` or ``-`` and starts with a letter or digit.
    """
    if not isinstance(name, str) or _PROMPT_NAME.fullmatch(name) is None:
        raise InvalidReference(
            f"invalid prompt name {name!r}: use 1-128 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )


def _check_variable_name(name: Any, path: str) -> None:
    if not isinstance(name, str) or _VARIABLE_NAME.fullmatch(name) is None:
        raise InvalidPrompt(
            f"invalid variable name {name!r}: use 1-64 letters, digits or '_', "
            "starting with a letter or '_'",
            path,
        )
    if name in _RESERVED_VARIABLE_NAMES:
        raise InvalidPrompt(
            f"variable name {name!r} is reserved by Python or Jinja2 templates; "
            "choose another name",
            path,
        )


# The definition


@dataclass(frozen=True, slots=True)
class Variable:
    """A variable that a request passes to the prompt's templates.

    A variable with a default is optional. An optional variable without a
    default that the request leaves out renders as None.
    """

    name: str
    type: str = "string"
    required: bool = True
    default: Any = None
    description: str | None = None

    def __post_init__(self) -> None:
        _check_variable_name(self.name, "name")
        if self.type not in VARIABLE_TYPES:
            raise InvalidPrompt(
                f"must be one of {', '.join(VARIABLE_TYPES)}, got {self.type!r}",
                "type",
            )
        if not isinstance(self.required, bool):
            raise InvalidPrompt(
                f"must be true or false, got {json_type_name(self.required)}",
                "required",
            )
        if self.default is not None:
            _check_json(self.default, "default")
            problem = type_mismatch(self.type, self.default)
            if problem is not None:
                raise InvalidPrompt(problem, "default")
            object.__setattr__(self, "required", False)
        description = _check_optional_text(self.description, "description")
        object.__setattr__(self, "description", description)

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical dict form.

        ``required`` appears only when it is false and no default implies it.
        """
        out: dict[str, Any] = {"type": self.type}
        if not self.required and self.default is None:
            out["required"] = False
        if self.default is not None:
            out["default"] = copy.deepcopy(self.default)
        if self.description is not None:
            out["description"] = self.description
        return out


@dataclass(frozen=True, slots=True)
class Message:
    """A chat message whose content is a Jinja2 template."""

    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidPrompt(
                f"must be one of {', '.join(ROLES)}, got {self.role!r}", "role"
            )
        _check_text(self.content, "content")

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """OpenAI chat request settings that a prompt fixes.

    ``group`` is the keelway model group the request goes to. ``extra`` contains
    other OpenAI chat parameters such as ``seed`` or ``tool_choice``. Empty
    ``stop`` and ``tools`` count as unset, and a single ``stop`` string
    becomes a one-element tuple.
    """

    group: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    response_format: dict[str, Any] | None = None
    tools: tuple[dict[str, Any], ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "group", _check_optional_text(self.group, "group"))
        temperature = _check_number(self.temperature, "temperature", 0, 2)
        object.__setattr__(self, "temperature", temperature)
        top_p = _check_number(self.top_p, "top_p", 0, 1)
        object.__setattr__(self, "top_p", top_p)
        if self.max_tokens is not None and (
            isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int)
        ):
            raise InvalidPrompt(
                f"must be an integer, got {json_type_name(self.max_tokens)}",
                "max_tokens",
            )
        if self.max_tokens is not None and self.max_tokens < 1:
            raise InvalidPrompt(
                f"must be at least 1, got {self.max_tokens}", "max_tokens"
            )
        object.__setattr__(self, "stop", _normalize_stop(self.stop))
        if self.response_format is not None:
            _check_typed_object(self.response_format, "response_format")
        object.__setattr__(self, "tools", _normalize_tools(self.tools))
        object.__setattr__(self, "extra", _normalize_extra(self.extra))

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical dict form, without unset settings."""
        out: dict[str, Any] = {}
        for key in ("group", "temperature", "max_tokens", "top_p"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.stop is not None:
            out["stop"] = list(self.stop)
        if self.response_format is not None:
            out["response_format"] = copy.deepcopy(self.response_format)
        if self.tools is not None:
            out["tools"] = [copy.deepcopy(tool) for tool in self.tools]
        if self.extra:
            out["extra"] = copy.deepcopy(self.extra)
        return out


def _normalize_stop(stop: Any) -> tuple[str, ...] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list | tuple):
        raise InvalidPrompt(
            f"must be a string or a list of strings, got {json_type_name(stop)}",
            "stop",
        )
    for index, sequence in enumerate(stop):
        _check_text(sequence, f"stop[{index}]", empty_ok=False)
    return tuple(stop) or None


def _check_typed_object(value: Any, path: str) -> None:
    """Check a JSON object with a string ``type``, as OpenAI's tools and
    response_format are."""
    if not isinstance(value, dict):
        raise InvalidPrompt(f"must be an object, got {json_type_name(value)}", path)
    _check_json(value, path)
    kind = value.get("type")
    if not isinstance(kind, str) or not kind:
        raise InvalidPrompt(
            "must have a string 'type', such as 'json_schema' or 'function'", path
        )


def _normalize_tools(tools: Any) -> tuple[dict[str, Any], ...] | None:
    if tools is None:
        return None
    if not isinstance(tools, list | tuple):
        raise InvalidPrompt(
            f"must be a list of tool objects, got {json_type_name(tools)}", "tools"
        )
    for index, tool in enumerate(tools):
        _check_typed_object(tool, f"tools[{index}]")
    return tuple(tools) or None


def _normalize_extra(extra: Any) -> dict[str, Any]:
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise InvalidPrompt(
            f"must be a mapping of OpenAI request fields, got {json_type_name(extra)}",
            "extra",
        )
    for key, value in extra.items():
        if not isinstance(key, str) or _EXTRA_FIELD_NAME.fullmatch(key) is None:
            raise InvalidPrompt(
                f"invalid request field name {key!r}: use lowercase letters, "
                "digits and '_'",
                "extra",
            )
        path = f"extra.{key}"
        if key in _REQUEST_OWNED_FIELDS:
            raise InvalidPrompt(
                "is set by each request, so a prompt cannot fix it; remove it", path
            )
        if key in _MODEL_KEYS:
            raise InvalidPrompt(
                f"set {key} directly under model, not under extra", path
            )
        if value is None:
            raise InvalidPrompt(
                "must not be null; remove the key to leave it unset", path
            )
        _check_json(value, path)
    return extra


@dataclass(frozen=True, slots=True)
class Links:
    """Names of the RAG collection, guardrail policy and eval data set a prompt
    uses. The registry stores them and does not check that they exist."""

    rag_collection: str | None = None
    guardrail_policy: str | None = None
    eval_dataset: str | None = None

    def __post_init__(self) -> None:
        for key in _LINK_KEYS:
            value = _check_optional_text(getattr(self, key), key)
            object.__setattr__(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical dict form, without unset links."""
        return {
            key: getattr(self, key)
            for key in _LINK_KEYS
            if getattr(self, key) is not None
        }


@dataclass(frozen=True, slots=True)
class PromptContent:
    """The content of one prompt version.

    Construction validates everything, including that each template parses
    and uses only declared variables, and raises InvalidPrompt with the field
    path. Treat the dicts inside as read-only.
    """

    messages: tuple[Message, ...]
    variables: tuple[Variable, ...] = ()
    model: ModelSettings = field(default_factory=ModelSettings)
    links: Links = field(default_factory=Links)
    description: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", _checked_tuple(self.messages, Message))
        object.__setattr__(self, "variables", _checked_tuple(self.variables, Variable))
        if not self.messages:
            raise InvalidPrompt("must contain at least one message", "messages")
        if not isinstance(self.model, ModelSettings):
            raise InvalidPrompt("must be a ModelSettings", "model")
        if not isinstance(self.links, Links):
            raise InvalidPrompt("must be a Links", "links")
        description = _check_optional_text(self.description, "description")
        object.__setattr__(self, "description", description)
        declared: set[str] = set()
        for variable in self.variables:
            if variable.name in declared:
                raise InvalidPrompt("declared twice", f"variables.{variable.name}")
            declared.add(variable.name)
        for index, message in enumerate(self.messages):
            _check_template(message.content, declared, f"messages[{index}].content")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptContent:
        """Build content from its dict form, raising InvalidPrompt on any problem.

        Variables may use the shorthand ``name: TYPE`` in place of a mapping.
        """
        if not isinstance(data, Mapping):
            raise InvalidPrompt(
                f"a prompt must be a mapping, got {json_type_name(data)}"
            )
        _check_keys(data, _CONTENT_KEYS, "")
        variables = _variables_from(data.get("variables"))
        messages = _messages_from(data.get("messages"))
        model = _model_from(data.get("model"))
        links = _links_from(data.get("links"))
        return cls(
            messages=messages,
            variables=variables,
            model=model,
            links=links,
            description=data.get("description"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical dict form.

        Keys come in a fixed order, unset and empty values are left out and
        variables always use the full mapping form.
        """
        out: dict[str, Any] = {}
        if self.description is not None:
            out["description"] = self.description
        if self.variables:
            out["variables"] = {
                variable.name: variable.to_dict() for variable in self.variables
            }
        out["messages"] = [message.to_dict() for message in self.messages]
        model = self.model.to_dict()
        if model:
            out["model"] = model
        links = self.links.to_dict()
        if links:
            out["links"] = links
        return out

    def content_hash(self) -> str:
        """Return ``sha256:HEX`` of the canonical JSON of ``to_dict()``.

        The JSON has sorted keys and no spaces, so formatting and key order in
        the source do not change the hash.
        """
        payload = json.dumps(
            self.to_dict(),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
        return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _checked_tuple(values: Any, kind: type[Any]) -> tuple[Any, ...]:
    name = "messages" if kind is Message else "variables"
    if not isinstance(values, list | tuple):
        raise InvalidPrompt(
            f"must be a tuple of {kind.__name__}, got {type(values).__name__}", name
        )
    for index, value in enumerate(values):
        if not isinstance(value, kind):
            raise InvalidPrompt(
                f"must be a {kind.__name__}, got {type(value).__name__}",
                f"{name}[{index}]",
            )
    return tuple(values)


_UNSUPPORTED_TAGS: dict[type[nodes.Node], str] = {
    nodes.Extends: "extends",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from ... import",
}


_TOO_DEEP = (
    "the template is nested too deeply; flatten its expressions, loops, "
    "conditions or blocks"
)
# SHA-256 digests of template sources that compiled, so that loading a stored
# version again skips the compile. Cleared when full.
_COMPILED_SOURCES: set[bytes] = set()
_MAX_COMPILED_SOURCES = 10_000


def _check_template(source: str, declared: set[str], path: str) -> None:
    """Raise InvalidPrompt unless ``source`` parses, compiles and uses only
    ``declared`` variables and the environment's globals."""
    try:
        tree = _ENVIRONMENT.parse(source)
        used = meta.find_undeclared_variables(tree) - _TEMPLATE_GLOBALS
    except TemplateSyntaxError as exc:
        raise InvalidPrompt(
            f"template syntax error on line {exc.lineno}: {exc.message}", path
        ) from None
    except RecursionError:
        # Jinja2's parser recurses once per level of nested expressions.
        raise InvalidPrompt(_TOO_DEEP, path) from None
    for unsupported in tree.find_all(tuple(_UNSUPPORTED_TAGS)):
        tag = _UNSUPPORTED_TAGS[type(unsupported)]
        raise InvalidPrompt(
            f"line {unsupported.lineno}: {{% {tag} %}} is not supported because "
            "each message is a single template",
            path,
        )
    undeclared = sorted(used - declared)
    if undeclared:
        names = ", ".join(repr(name) for name in undeclared)
        if len(undeclared) == 1:
            problem = f"uses undeclared variable {names}; declare it under variables"
        else:
            problem = f"uses undeclared variables {names}; declare them under variables"
        raise InvalidPrompt(problem, path)
    _check_compiles(source, tree, path)


def _check_compiles(source: str, tree: nodes.Template, path: str) -> None:
    """Raise InvalidPrompt unless the parsed template nests at most
    MAX_LOOP_NESTING for loops and compiles to Python.

    A template can parse and still exceed Python's limits, such as 20
    statically nested blocks (Jinja2 compiles each for loop to one) or 100
    levels of indentation, which would otherwise fail every render.
    """
    digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).digest()
    if digest in _COMPILED_SOURCES:
        return
    _check_loop_nesting(tree, path)
    try:
        _ENVIRONMENT.compile(tree)
    except SyntaxError as exc:
        raise InvalidPrompt(f"{_TOO_DEEP} (Python reports: {exc.msg})", path) from None
    except RecursionError:
        raise InvalidPrompt(_TOO_DEEP, path) from None
    if len(_COMPILED_SOURCES) >= _MAX_COMPILED_SOURCES:
        _COMPILED_SOURCES.clear()
    _COMPILED_SOURCES.add(digest)


def _check_loop_nesting(tree: nodes.Template, path: str) -> None:
    """Raise InvalidPrompt when for loops nest more than MAX_LOOP_NESTING deep.

    Each loop level multiplies the iterations, so deeper nesting would run out
    of the loop budget on all but tiny inputs. Only the text counts: a loop in
    a macro that a loop calls is not nested in it.
    """
    # An explicit stack, because deeply nested templates exceed Python's
    # recursion limit.
    stack: list[tuple[nodes.Node, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, nodes.For):
            stack.extend((child, depth) for child in node.iter_child_nodes())
            continue
        if depth + 1 > MAX_LOOP_NESTING:
            raise InvalidPrompt(
                f"line {node.lineno}: for loops are nested more than "
                f"{MAX_LOOP_NESTING} deep; flatten the loops or loop over "
                "fewer levels of data",
                path,
            )
        stack.extend((child, depth + 1) for child in node.body)
        for child in node.iter_child_nodes(exclude=("body",)):
            stack.append((child, depth))


def _variables_from(raw: Any) -> tuple[Variable, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise InvalidPrompt(
            "must be a mapping of variable names to types or definitions, got "
            f"{json_type_name(raw)}",
            "variables",
        )
    variables = []
    for name, spec in raw.items():
        _check_variable_name(name, "variables")
        path = f"variables.{name}"
        if isinstance(spec, str):
            spec = {"type": spec}
        if not isinstance(spec, Mapping):
            raise InvalidPrompt(
                "must be a type name such as string, or a mapping with type, "
                f"required, default and description; got {json_type_name(spec)}",
                path,
            )
        _check_keys(spec, _VARIABLE_KEYS, path)
        required = spec.get("required")
        default = spec.get("default")
        if required is not None and not isinstance(required, bool):
            raise InvalidPrompt(
                f"must be true or false, got {json_type_name(required)}",
                f"{path}.required",
            )
        if required is True and default is not None:
            raise InvalidPrompt(
                "a variable with a default is optional; remove required or the default",
                f"{path}.required",
            )
        with _within(path):
            variables.append(
                Variable(
                    name=name,
                    type=spec.get("type", "string"),
                    required=default is None if required is None else required,
                    default=default,
                    description=spec.get("description"),
                )
            )
    return tuple(variables)


def _messages_from(raw: Any) -> tuple[Message, ...]:
    if raw is None:
        raise InvalidPrompt("missing; add at least one message", "messages")
    if not isinstance(raw, list | tuple):
        raise InvalidPrompt(
            f"must be a list of messages, got {json_type_name(raw)}", "messages"
        )
    messages = []
    for index, item in enumerate(raw):
        path = f"messages[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidPrompt(
                f"must be a mapping with role and content, got {json_type_name(item)}",
                path,
            )
        _check_keys(item, _MESSAGE_KEYS, path)
        for key in _MESSAGE_KEYS:
            if key not in item:
                raise InvalidPrompt("missing", f"{path}.{key}")
        with _within(path):
            messages.append(Message(role=item["role"], content=item["content"]))
    return tuple(messages)


def _model_from(raw: Any) -> ModelSettings:
    if raw is None:
        return ModelSettings()
    if not isinstance(raw, Mapping):
        raise InvalidPrompt(f"must be a mapping, got {json_type_name(raw)}", "model")
    _check_keys(raw, _MODEL_KEYS, "model")
    with _within("model"):
        return ModelSettings(**raw)


def _links_from(raw: Any) -> Links:
    if raw is None:
        return Links()
    if not isinstance(raw, Mapping):
        raise InvalidPrompt(f"must be a mapping, got {json_type_name(raw)}", "links")
    _check_keys(raw, _LINK_KEYS, "links")
    with _within("links"):
        return Links(**raw)


# YAML files


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, but a duplicate mapping key is an error instead of
    silently replacing the earlier value."""

    def construct_mapping(
        self, node: yaml.MappingNode, deep: bool = False
    ) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: set[Any] = set()
        for key_node, _value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


class _CanonicalDumper(yaml.SafeDumper):
    """SafeDumper that never writes aliases, so repeated values are spelled out."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line text uses a literal block. PyYAML itself falls back to a
    # double-quoted scalar where a block cannot hold the string exactly, such
    # as trailing spaces on a line or tabs. Line breaks other than \n would
    # become \n inside a block, and a block of blank lines is hard to read,
    # so those strings are always double-quoted.
    style: str | None = None
    if any(char in value for char in "\r\x85\u2028\u2029"):
        style = '"'
    elif "\n" in value:
        style = "|" if value.strip() else '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_CanonicalDumper.add_representer(str, _represent_str)


def parse_prompt_yaml(text: str, where: str) -> tuple[str, PromptContent]:
    """Parse a prompt's YAML text into its name and content.

    ``where`` names the source, usually a file name, and starts every error
    message. Duplicate mapping keys are errors.
    """
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise InvalidPrompt(f"invalid YAML{position}: {problem}", where=where) from None
    except yaml.YAMLError as exc:
        raise InvalidPrompt(f"invalid YAML: {exc}", where=where) from None
    except RecursionError:
        raise InvalidPrompt("invalid YAML: nested too deeply", where=where) from None
    if data is None:
        raise InvalidPrompt(
            "the document is empty; expected a mapping with name and messages",
            where=where,
        )
    if not isinstance(data, dict):
        raise InvalidPrompt(
            f"must be a mapping with name and messages, got {json_type_name(data)}",
            where=where,
        )
    try:
        _check_keys(data, ("name", *_CONTENT_KEYS), "")
        if "name" not in data:
            raise InvalidPrompt("missing; set it to the prompt's name", "name")
        name = _check_text(data["name"], "name")
        try:
            validate_prompt_name(name)
        except InvalidReference as exc:
            raise InvalidPrompt(str(exc), "name") from None
        content = PromptContent.from_dict(
            {key: value for key, value in data.items() if key != "name"}
        )
    except InvalidPrompt as exc:
        raise InvalidPrompt(exc.problem, exc.path, where) from None
    return name, content


def dump_prompt_yaml(name: str, content: PromptContent) -> str:
    """Return the canonical YAML text of a prompt.

    ``parse_prompt_yaml`` reads the text back to the same name and content,
    and dumping that again gives the same text.
    """
    validate_prompt_name(name)
    document = {"name": name, **content.to_dict()}
    text = yaml.dump(
        document,
        Dumper=_CanonicalDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=sys.maxsize,
        indent=2,
    )
    # Checks the round trip because a string PyYAML writes in a form that
    # reads back differently would otherwise corrupt the prompt silently.
    if parse_prompt_yaml(text, f"canonical YAML of {name}") != (name, content):
        raise AssertionError(
            f"internal error: the canonical YAML of prompt {name!r} does not read "
            "back to the same content; report this with the prompt"
        )
    return text
