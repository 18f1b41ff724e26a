"""Jinja2 sandbox that renders prompt templates within resource limits.

``template_environment`` creates the environment. Each render of a prompt
draws from one ``RenderBudget``, which bounds its for-loop iterations, macro
and block calls, call nesting and wall-clock time. The sandbox also bounds the
size and nesting of the values that a template builds and of the text it
outputs. The docstring of ``_PromptSandbox`` lists the limits and the gaps
they leave.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import time
import types
from collections.abc import (
    Callable,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
    Sized,
)
from contextvars import ContextVar, Token
from typing import Any, cast

from jinja2 import Environment, StrictUndefined, Undefined, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.filters import make_attrgetter, sync_do_join
from jinja2.runtime import BlockReference, Context, LoopContext, Macro
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
)
from jinja2.utils import Cycler, Joiner, Namespace, _PassArg, generate_lorem_ipsum
from markupsafe import Markup

from keelway.prompts.errors import TemplateError

# Limits on rendering. The docstring of _PromptSandbox describes what they cover.
#
# Maximum characters of one rendered message, and maximum size of any value
# that a template builds (see _size_of for how a list or dict is measured).
MAX_RENDERED_CHARS = 1_000_000
# Maximum bit length of an integer that a template builds with * or **.
MAX_TEMPLATE_INT_BITS = 10_000
# Maximum for-loop iterations, all loops together, in one render of a prompt.
MAX_LOOP_ITERATIONS = 100_000
# Maximum macro and block calls, including caller(), in one render of a
# prompt. A call took about 4 us on a 2-core AMD EPYC VM, so this stops runaway
# recursion well within MAX_RENDER_SECONDS.
MAX_MACRO_CALLS = 20_000
# Maximum nesting of macro calls and recursive loop() calls.
MAX_CALL_DEPTH = 50
# Maximum wall-clock time of one render of a prompt, in seconds.
MAX_RENDER_SECONDS = 1.0
# Maximum nesting of lists, tuples and dicts in a value that a template builds.
# CPython 3.11 hashes a nested tuple by recursing in C without a depth check, and
# hashing a tuple nested 200,000 deep crashed it with an 8 MiB stack. Beyond
# Python's default recursion limit of 1000, repr and comparisons fail anyway.
MAX_VALUE_DEPTH = 1_000
# Maximum for loops nested inside one another in the text of a template.
MAX_LOOP_NESTING = 5

# Template environment
#
# Rendering runs on the gateway's event loop, so the sandbox below bounds the
# time and memory of every render. Its hooks draw from the RenderBudget that
# the template's Context carries.

# Template operations between two reads of the clock.
_TICKS_PER_CLOCK_CHECK = 16
# Building or measuring a value of at least this size reads the clock at once.
_CLOCK_CHECK_SIZE = 10_000
# Containers of at least this size have their size memoized during a render.
# The memo is cleared once it keeps more entries or elements than allowed.
_MEMO_MIN_SIZE = 256
_MAX_MEMO_ENTRIES = 10_000
_MAX_MEMO_ELEMENTS = MAX_RENDERED_CHARS
# Maximum indent of the tojson filter. Python's json module builds the indent
# of every nesting level as one string, so a huge indent alone exhausts memory.
_MAX_JSON_INDENT = 100
# Characters allowed per field of a % format for a number's digits and sign.
_PERCENT_FIELD_CHARS = 32
# Characters allowed per word of the urlize filter for the <a> tag around it.
_URLIZE_TAG_CHARS = 64
# Characters allowed per lipsum word, including its space and punctuation.
_LOREM_WORD_CHARS = 16

_DICT_VIEWS: tuple[type, ...] = (type({}.keys()), type({}.values()), type({}.items()))
_CONTAINERS = (
    list,
    tuple,
    dict,
    set,
    frozenset,
    *_DICT_VIEWS,
    Namespace,
    Cycler,
    Joiner,
)
# Type tuples for isinstance on hot paths, where a ``X | Y`` union would be
# built again on every call.
_TEXTS = (str, bytes)
_LISTS = (list, tuple)
_SEQUENCES = (str, bytes, list, tuple)
_METHODS = (types.MethodType, types.BuiltinMethodType)
_NESTED_CALLABLES = (Macro, BlockReference, LoopContext)
_PRINTED_SCALARS = frozenset({int, float, bool, type(None)})
# Keyword arguments that generated code passes to Context.call for itself.
_CONTEXT_KWARGS = frozenset({"_loop_vars", "_block_vars"})
# Line boundaries of str.splitlines, which the indent and wordwrap filters use.
_LINE_BOUNDARIES = (
    "\n",
    "\r",
    "\v",
    "\f",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x85",
    "\u2028",
    "\u2029",
)
# One field of a printf-style format: key, width, precision and conversion.
_PERCENT_FIELD = re.compile(
    r"%(?:\(([^)]*)\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.?)", re.DOTALL
)
_DIGITS = re.compile(r"\d+")
# Filters that return one of their inputs, which may be a large request
# variable, instead of building a value.
_SELECTING_FILTERS = frozenset(
    {"attr", "d", "default", "first", "last", "max", "min", "random"}
)


# The budget of the render in progress, set by ``with RenderBudget()``.
_ACTIVE_BUDGET: ContextVar[RenderBudget | None] = ContextVar(
    "keelway_render_budget", default=None
)


class RenderBudget:
    """The loop iterations, macro calls, call depth and time left to a render.

    The templates rendered inside ``with RenderBudget():`` share the budget. A
    template rendered outside such a block gets a budget of its own. The
    deadline starts when the budget is created.

    The budget also memoizes the sizes of large containers by id, so measuring
    a structure whose large parts are shared does not walk each part again.
    Each entry keeps its container alive, so no other object can take over the
    id during the render.
    """

    __slots__ = (
        "_calls_left",
        "_deadline",
        "_depth",
        "_iterations_left",
        "_memo_elements",
        "_sizes",
        "_ticks_left",
        "_token",
    )

    def __init__(self) -> None:
        self._iterations_left = MAX_LOOP_ITERATIONS
        self._calls_left = MAX_MACRO_CALLS
        self._depth = 0
        self._deadline = time.monotonic() + MAX_RENDER_SECONDS
        self._ticks_left = _TICKS_PER_CLOCK_CHECK
        self._sizes: dict[int, tuple[Any, int, int]] = {}
        self._memo_elements = 0
        self._token: Token[RenderBudget | None] | None = None

    def __enter__(self) -> RenderBudget:
        self._token = _ACTIVE_BUDGET.set(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _ACTIVE_BUDGET.reset(self._token)
            self._token = None

    def tick(self) -> None:
        """Count one template operation, and read the clock every few."""
        self._ticks_left -= 1
        if self._ticks_left <= 0:
            self.check_clock()

    def check_clock(self) -> None:
        """Raise TemplateError once the render has run past its deadline."""
        self._ticks_left = _TICKS_PER_CLOCK_CHECK
        if time.monotonic() > self._deadline:
            raise TemplateError(
                f"rendering timed out after {MAX_RENDER_SECONDS} seconds; "
                "simplify the template's loops and macros or pass smaller variables"
            )

    def iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """Yield the items of ``iterable``, each one a loop iteration."""
        for item in iterable:
            self._iterations_left -= 1
            if self._iterations_left < 0:
                raise TemplateError(
                    f"the template ran more than {MAX_LOOP_ITERATIONS} loop "
                    "iterations, the limit for one render; loop over fewer items "
                    "or nest fewer loops"
                )
            self._ticks_left -= 1
            if self._ticks_left <= 0:
                self.check_clock()
            yield item

    def enter_call(self, *, is_macro: bool) -> None:
        """Count a call of a macro, block or recursive loop that is starting.

        Raises TemplateError when there are too many macro calls or the calls
        are nested too deeply. Pair each call with ``exit_call``.
        """
        if is_macro:
            self._calls_left -= 1
            if self._calls_left < 0:
                raise TemplateError(
                    f"the template called macros more than {MAX_MACRO_CALLS} "
                    "times, the limit for one render; call them fewer times"
                )
        if self._depth >= MAX_CALL_DEPTH:
            raise TemplateError(
                f"macro, block or recursive loop() calls are nested more than "
                f"{MAX_CALL_DEPTH} deep; check that recursive macros and loops "
                "reach a base case"
            )
        self._depth += 1

    def exit_call(self) -> None:
        """Count the end of a call that ``enter_call`` counted."""
        self._depth -= 1

    def size_of(self, value: Any) -> int:
        """Return the size of ``value`` as ``_size_of`` measures it."""
        return _size_of(value, self)

    def check_size(self, value: Any, operation: str) -> None:
        """Raise TemplateError when ``value``, built by ``operation``, is too large."""
        size = _size_of(value, self)
        if size > MAX_RENDERED_CHARS:
            raise TemplateError(_built_too_large(value, size, operation))
        if size >= _CLOCK_CHECK_SIZE:
            self.check_clock()

    def limit_iterator(self, iterator: Iterator[Any], operation: str) -> Iterator[Any]:
        """Yield the items of ``iterator``, raising TemplateError once their
        total size passes MAX_RENDERED_CHARS."""
        size = 0
        for item in iterator:
            self.tick()
            size += 1 + _size_of(item, self)
            if size > MAX_RENDERED_CHARS:
                raise TemplateError(_over_size_limit(operation))
            yield item

    def recall_size(self, container: Any) -> tuple[int, int] | None:
        """Return the memoized size and height of ``container``, or None."""
        entry = self._sizes.get(id(container))
        if entry is not None and entry[0] is container:
            return entry[1], entry[2]
        return None

    def remember_size(self, container: Any, size: int, height: int) -> None:
        """Memoize the size and height of ``container`` if it is large and
        immutable."""
        # Templates can assign to a namespace's attributes, so its size changes.
        if size < _MEMO_MIN_SIZE or isinstance(container, Namespace):
            return
        elements = 1 if isinstance(container, Cycler | Joiner) else len(container)
        if (
            len(self._sizes) >= _MAX_MEMO_ENTRIES
            or self._memo_elements + elements > _MAX_MEMO_ELEMENTS
        ):
            self._sizes.clear()
            self._memo_elements = 0
        self._sizes[id(container)] = (container, size, height)
        self._memo_elements += elements


def _own_size(value: Any) -> int | None:
    """Return the size of a value without elements, or None for a container."""
    if isinstance(value, _TEXTS):
        return len(value)
    if isinstance(value, _CONTAINERS):
        return None
    if isinstance(value, int):
        # About the number of decimal digits, and nothing for small numbers.
        bits = value.bit_length()
        return bits // 3 if bits > 64 else 0
    return 0


def _elements(container: Any) -> Iterable[Any]:
    if isinstance(container, dict):
        return itertools.chain.from_iterable(container.items())
    if isinstance(container, Namespace):
        attributes = object.__getattribute__(container, "_Namespace__attrs")
        return itertools.chain.from_iterable(attributes.items())
    if isinstance(container, Cycler):
        return cast(Iterable[Any], container.items)
    if isinstance(container, Joiner):
        return (container.sep,)
    return cast(Iterable[Any], container)


def _size_of(value: Any, budget: RenderBudget | None = None) -> int:
    """Return the size of ``value``, or a number over MAX_RENDERED_CHARS once
    the count passes that limit.

    A string or bytes counts its length, a large integer about its digits and
    other scalars nothing. A list, tuple, set or dict counts one per element
    (a dict's keys and values count separately) plus the elements' own sizes,
    and so does a namespace, cycler or joiner. An element that appears twice
    counts twice, so a value's size is never far below the length of its text.
    That stops a template from building a small structure, such as a list that
    contains another list twice, level after level, whose text is huge.

    Raises TemplateError when containers nest more than MAX_VALUE_DEPTH deep.
    """
    own = _own_size(value)
    if own is not None:
        return own
    total = 0
    # One frame per container on the path from ``value``: the container, its
    # elements left to count, the total before it and the height of its
    # tallest element so far. A container's height is 1 plus that.
    stack: list[list[Any]] = [[value, iter(_elements(value)), 0, 0]]
    while stack:
        frame = stack[-1]
        for element in frame[1]:
            total += 1
            if total > MAX_RENDERED_CHARS:
                return total
            own = _own_size(element)
            if own is None:
                known = budget.recall_size(element) if budget is not None else None
                if known is None:
                    _check_depth(len(stack) + 1)
                    stack.append([element, iter(_elements(element)), total, 0])
                    break
                own, height = known
                _check_depth(len(stack) + height)
                frame[3] = max(frame[3], height)
            total += own
        else:
            stack.pop()
            container, _, start, tallest = frame
            if budget is not None:
                budget.remember_size(container, total - start, tallest + 1)
            if stack:
                stack[-1][3] = max(stack[-1][3], tallest + 1)
    return total


def _check_depth(depth: int) -> None:
    if depth > MAX_VALUE_DEPTH:
        raise TemplateError(
            f"the template builds a value whose lists, tuples or dicts are nested "
            f"more than {MAX_VALUE_DEPTH} deep"
        )


def _too_large(size: int, operation: str | None = None) -> str:
    """Return the message for text or a repeat of known length ``size``."""
    built = f" with {operation}" if operation is not None else ""
    return (
        f"the template builds a value of length {size}{built}, over the limit of "
        f"{MAX_RENDERED_CHARS}"
    )


def _too_large_estimate(size: int, operation: str) -> str:
    """Return the message for a value estimated, before it is built, to have
    about ``size`` characters."""
    return (
        f"the template would build a value of about {size} characters with "
        f"{operation}, over the limit of {MAX_RENDERED_CHARS}"
    )


def _over_size_limit(operation: str | None) -> str:
    """Return the message for a value whose measure passed the limit. The
    measure stops there, so the value's full size is unknown."""
    built = f" with {operation}" if operation is not None else ""
    return (
        f"the template builds a value{built} that has more than "
        f"{MAX_RENDERED_CHARS} elements and characters in all"
    )


def _built_too_large(value: Any, size: int, operation: str) -> str:
    if isinstance(value, _TEXTS):
        return _too_large(size, operation)
    return _over_size_limit(operation)


def _too_many_bits(bits: int) -> str:
    return (
        f"the template builds an integer of about {bits} bits, over the limit of "
        f"{MAX_TEMPLATE_INT_BITS}"
    )


def _budget_of(context: Context) -> RenderBudget:
    return cast(_PromptContext, context).budget


class _PromptContext(Context):
    """A template context that carries the RenderBudget of its render."""

    def __init__(
        self,
        environment: Environment,
        parent: dict[str, Any],
        name: str | None,
        blocks: dict[str, Callable[[Context], Iterator[str]]],
        globals: MutableMapping[str, Any] | None = None,
    ) -> None:
        super().__init__(environment, parent, name, blocks, globals)
        self.budget = _ACTIVE_BUDGET.get() or RenderBudget()

    def derived(self, locals: dict[str, Any] | None = None) -> Context:
        context = super().derived(locals)
        cast(_PromptContext, context).budget = self.budget
        return context


class _BudgetedIterable:
    """The iterable of a for loop, whose items each draw one loop iteration.

    ``len`` passes through, so ``loop.length`` does not copy the items.
    """

    __slots__ = ("_budget", "_iterable")

    def __init__(self, iterable: Iterable[Any], budget: RenderBudget) -> None:
        self._iterable = iterable
        self._budget = budget

    def __iter__(self) -> Iterator[Any]:
        return self._budget.iterate(self._iterable)

    def __len__(self) -> int:
        return len(cast(Sized, self._iterable))


class _PromptCodeGenerator(CodeGenerator):
    """Jinja2's code generator with calls into _PromptSandbox's limits.

    The generated code passes the iterable of every for loop, every list,
    tuple and dict literal and the parts of every ``~`` through the sandbox.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # ids of the nodes that are the iterables of for loops
        self._loop_iterables: set[int] = set()

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if id(node) not in self._loop_iterables:
            return super().visit(node, *args, **kwargs)
        self.write("environment.count_iterations(context, ")
        result = super().visit(node, *args, **kwargs)
        self.write(")")
        return result

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        self._loop_iterables.add(id(node.iter))
        super().visit_For(node, frame)

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._write_checked_literal(super().visit_List, node, frame)

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        # A tuple is also the target of an assignment or loop, such as a, b.
        if node.ctx == "load":
            self._write_checked_literal(super().visit_Tuple, node, frame)
        else:
            super().visit_Tuple(node, frame)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._write_checked_literal(super().visit_Dict, node, frame)

    def _write_checked_literal(
        self,
        visit: Callable[[Any, Frame], None],
        node: nodes.List | nodes.Tuple | nodes.Dict,
        frame: Frame,
    ) -> None:
        # A constant literal is no larger than the template text.
        try:
            node.as_const(frame.eval_ctx)
        except nodes.Impossible:
            self.write("environment.check_literal(context, ")
            visit(node, frame)
            self.write(")")
        else:
            visit(node, frame)

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # Jinja2 3.1's visit_Concat, with the parts checked before they are joined.
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"{func_name}(environment.check_concat(context, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")


def _join_output(parts: Iterable[str]) -> str:
    """Join the output of a macro, block, call block, set block or filter block.

    Raises TemplateError once the output passes MAX_RENDERED_CHARS characters.
    """
    collected = []
    size = 0
    for part in parts:
        if isinstance(part, str):
            size += len(part)
            if size > MAX_RENDERED_CHARS:
                raise TemplateError(
                    "the output of a macro, block, call block or set block exceeds "
                    f"{MAX_RENDERED_CHARS} characters; shorten it"
                )
        collected.append(part)
    return "".join(collected)


class _LimitedFormatter(SandboxedFormatter):
    """The sandbox's str.format formatter, with widths, precisions and the
    output held to MAX_RENDERED_CHARS."""

    _size = 0

    def vformat(
        self, format_string: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> str:
        self._size = len(format_string)
        return super().vformat(format_string, args, kwargs)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is not None:
            _check_formatted_value(value)
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        _check_format_spec(format_spec)
        _check_formatted_value(value)
        text = super().format_field(value, format_spec)
        self._size += len(text)
        if self._size > MAX_RENDERED_CHARS:
            raise TemplateError(_over_size_limit("str.format()"))
        return text


class _LimitedEscapeFormatter(_LimitedFormatter, SandboxedEscapeFormatter):
    """The limited formatter for ``Markup.format``, which escapes its fields."""


def _check_format_spec(spec: str) -> None:
    for match in _DIGITS.finditer(spec):
        if _parse_count(match.group()) > MAX_RENDERED_CHARS:
            raise TemplateError(
                f"the format spec {spec[:40]!r} sets a width or precision over the "
                f"limit of {MAX_RENDERED_CHARS}"
            )


def _check_formatted_value(value: Any) -> None:
    if not isinstance(value, str) and _size_of(value) > MAX_RENDERED_CHARS:
        raise TemplateError(_over_size_limit("str.format()"))


def _parse_count(digits: str) -> int:
    # Python's formatting rejects widths this long, and int() rejects digit
    # strings over 4300 characters.
    return int(digits) if len(digits) <= 18 else 10**18


def _argument(
    args: Sequence[Any], kwargs: Mapping[str, Any], index: int, name: str, default: Any
) -> Any:
    """Return a call's argument at position ``index`` or keyword ``name``."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _line_count(text: str) -> int:
    """Return an upper bound of ``len(text.splitlines()) + 1``."""
    return 1 + sum(text.count(boundary) for boundary in _LINE_BOUNDARIES)


def _percent_format_size(
    template: str, values: Any, budget: RenderBudget | None = None
) -> int:
    """Estimate the length of ``template % values`` from its fields.

    Each field counts its width, precision and the size of its value, plus
    _PERCENT_FIELD_CHARS. That falls short for %r of text with many escapes or
    %f of a huge float, so callers check the result's length too. Arguments
    that do not fit the fields are skipped, because ``%`` raises TypeError.
    """
    if isinstance(values, tuple):
        positional: tuple[Any, ...] = values
        mapping = None
    else:
        positional = (values,)
        mapping = values if isinstance(values, Mapping) else None
    size = len(template)
    index = 0
    for match in _PERCENT_FIELD.finditer(template):
        key, width, precision, conversion = match.groups()
        if conversion == "%":
            continue
        for count in (width, precision):
            if count == "*":
                if index < len(positional) and isinstance(positional[index], int):
                    size += abs(positional[index])
                index += 1
            elif count:
                size += _parse_count(count)
        if key is not None and mapping is not None:
            value = mapping.get(key)
        elif index < len(positional):
            value = positional[index]
            index += 1
        else:
            value = None
        size += _PERCENT_FIELD_CHARS + _size_of(value, budget)
        if size > MAX_RENDERED_CHARS:
            break
    return size


def _replaced_size(text: Any, old: Any, new: Any, count: Any) -> int | None:
    """Return the length of ``text.replace(old, new, count)``, or None when the
    arguments have types that make replace raise."""
    kind = type(text) if isinstance(text, _TEXTS) else None
    if kind is None or not isinstance(old, kind) or not isinstance(new, kind):
        return None
    if not isinstance(count, int):
        return None
    if len(new) <= len(old):
        return len(text)
    occurrences = len(text) + 1 if not old else text.count(old)
    if count >= 0:
        occurrences = min(occurrences, count)
    return len(text) + occurrences * (len(new) - len(old))


def _collect_joined(
    budget: RenderBudget, iterable: Any, separator: int, operation: str
) -> list[Any]:
    """Return the items of ``iterable`` as a list, raising TemplateError once
    joining them with a separator of length ``separator`` would pass
    MAX_RENDERED_CHARS."""
    items = []
    size = 0
    for item in iterable:
        size += separator + budget.size_of(item)
        if size > MAX_RENDERED_CHARS:
            raise TemplateError(_over_size_limit(operation))
        items.append(item)
    return items


def _check_binop_size(
    budget: RenderBudget, operator: str, left: Any, right: Any
) -> None:
    """Raise TemplateError when ``left operator right`` would be too large."""
    if operator == "+":
        if isinstance(left, _TEXTS) and isinstance(right, _TEXTS):
            size = len(left) + len(right)
            if size > MAX_RENDERED_CHARS:
                raise TemplateError(_too_large(size))
        elif isinstance(left, _LISTS) and isinstance(right, _LISTS):
            size = budget.size_of(left) + budget.size_of(right)
            if size > MAX_RENDERED_CHARS:
                raise TemplateError(_over_size_limit(None))
    elif operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            bits = left.bit_length() + right.bit_length()
            if bits > MAX_TEMPLATE_INT_BITS:
                raise TemplateError(_too_many_bits(bits))
            return
        if isinstance(left, _SEQUENCES) and isinstance(right, int):
            sequence, count = left, right
        elif isinstance(right, _SEQUENCES) and isinstance(left, int):
            sequence, count = right, left
        else:
            return
        unit = budget.size_of(sequence)
        if unit * count <= MAX_RENDERED_CHARS:
            return
        # A list's measure stops at the limit, so past it the size is unknown.
        if isinstance(sequence, _TEXTS) or unit <= MAX_RENDERED_CHARS:
            raise TemplateError(_too_large(unit * count))
        raise TemplateError(_over_size_limit(None))
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            bits = max(right, 0) * left.bit_length()
            if bits > MAX_TEMPLATE_INT_BITS:
                raise TemplateError(_too_many_bits(bits))
    elif operator == "%" and isinstance(left, str):
        size = _percent_format_size(left, right, budget)
        if size > MAX_RENDERED_CHARS:
            raise TemplateError(_too_large_estimate(size, "%"))


def _check_call(
    budget: RenderBudget, function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Raise TemplateError when calling ``function`` would build a value over
    the size limit before it returns. Return the arguments to call it with."""
    if function is generate_lorem_ipsum:
        paragraphs = _argument(args, kwargs, 0, "n", 5)
        max_words = _argument(args, kwargs, 3, "max", 100)
        if isinstance(paragraphs, int) and isinstance(max_words, int):
            # A paragraph without words still costs a loop and a full stop.
            words_per_paragraph = max(max_words, 0) + 1
            text_size = max(paragraphs, 0) * words_per_paragraph * _LOREM_WORD_CHARS
            if text_size > MAX_RENDERED_CHARS:
                raise TemplateError(_too_large_estimate(text_size, "lipsum()"))
        return args
    if not isinstance(function, _METHODS):
        return args
    owner = function.__self__
    name = function.__name__
    size: int | None = None
    if isinstance(owner, _TEXTS):
        if name in ("center", "ljust", "rjust", "zfill"):
            width = _argument(args, kwargs, 0, "width", None)
            if isinstance(width, int):
                size = max(len(owner), width)
        elif name == "expandtabs":
            tabsize = _argument(args, kwargs, 0, "tabsize", 8)
            if isinstance(tabsize, int):
                tabs = (
                    owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
                )
                size = len(owner) + tabs * max(tabsize, 0)
        elif name == "replace" and len(args) >= 2:
            count = _argument(args, kwargs, 2, "count", -1)
            size = _replaced_size(owner, args[0], args[1], count)
        elif name == "translate" and args and isinstance(args[0], Mapping):
            longest = max(
                (len(text) for text in args[0].values() if isinstance(text, str)),
                default=1,
            )
            size = len(owner) * max(longest, 1)
        elif name == "join" and args and isinstance(args[0], Iterable):
            operation = _callable_name(function)
            items = _collect_joined(budget, args[0], len(owner), operation)
            return (items, *args[1:])
    elif isinstance(owner, int) and name == "to_bytes":
        length = _argument(args, kwargs, 0, "length", 1)
        if isinstance(length, int):
            size = length
    if size is not None and size > MAX_RENDERED_CHARS:
        raise TemplateError(_too_large_estimate(size, _callable_name(function)))
    return args


def _callable_name(function: Any) -> str:
    name = getattr(function, "__name__", type(function).__name__)
    if not isinstance(function, _METHODS):
        return f"{name}()"
    owner = function.__self__
    if isinstance(owner, types.ModuleType):
        return f"{name}()"
    # A class method, such as dict.fromkeys, is bound to the class itself.
    owner_name = owner.__name__ if isinstance(owner, type) else type(owner).__name__
    return f"{owner_name}.{name}()"


# Size estimates of filters whose result can be far larger than their input,
# checked before the filter runs. Each takes the context, the filtered value and
# the filter's other arguments, and returns None when it cannot tell.
_FilterEstimate = Callable[[Context, Any, tuple[Any, ...], dict[str, Any]], int | None]


def _estimate_center(
    context: Context, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> int | None:
    width = _argument(args, kwargs, 0, "width", 80)
    return max(_size_of(value), width) if isinstance(width, int) else None


def _estimate_indent(
    context: Context, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> int | None:
    width = _argument(args, kwargs, 0, "width", 4)
    if isinstance(width, str):
        indent = len(width)
    elif isinstance(width, int):
        indent = max(width, 0)
    else:
        return None
    if not isinstance(value, str):
        return indent
    return len(value) + (_line_count(value) + 1) * indent


def _estimate_wordwrap(
    context: Context, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> int | None:
    width = _argument(args, kwargs, 0, "width", 79)
    wrapstring = _argument(args, kwargs, 2, "wrapstring", None)
    if wrapstring is None:
        wrapstring = context.environment.newline_sequence
    if not (
        isinstance(value, str)
        and isinstance(wrapstring, str)
        and isinstance(width, int)
        and width > 0
    ):
        return None
    # Two consecutive wrapped lines of a paragraph hold more than ``width``
    # characters, or the second would have fit on the first.
    paragraphs = _line_count(value)
    lines = 2 * len(value) // width + 2 * paragraphs
    return len(value) + lines * len(wrapstring)


def _estimate_format(
    context: Context, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> int | None:
    if not isinstance(value, str):
        return None
    return _percent_format_size(value, kwargs or args, _budget_of(context))


def _estimate_replace(
    context: Context, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> int | None:
    old = _argument(args, kwargs, 0, "old", None)
    new = _argument(args, kwargs, 1, "new", None)
    count = _argument(args, kwargs, 2, "count", None)
    # The filter converts numbers to text.
    old, new = (str(x) if isinstance(x, int | float) else x for x in (old, new))
    return _replaced_size(value, old, new, -1 if count is None else count)


def _estimate_batch(
    context: Context, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> int | None:
    # The last batch is padded with up to ``linecount`` copies of ``fill_with``.
    linecount = _argument(args, kwargs, 0, "linecount", None)
    fill_with = _argument(args, kwargs, 1, "fill_with", None)
    if fill_with is None or not isinstance(linecount, int):
        return None
    return linecount * (1 + _budget_of(context).size_of(fill_with))


def _estimate_slice(
    context: Context, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> int | None:
    # The filter yields one list per slice, even when the value is shorter.
    slices = _argument(args, kwargs, 0, "slices", None)
    return slices if isinstance(slices, int) else None


def _estimate_urlize(
    context: Context, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> int | None:
    if not isinstance(value, str):
        return None
    target = _argument(args, kwargs, 2, "target", None)
    rel = _argument(args, kwargs, 3, "rel", None)
    # Each link repeats its URL in the href and wraps it in a tag.
    tag = _URLIZE_TAG_CHARS + sum(len(x) for x in (target, rel) if isinstance(x, str))
    return 2 * len(value) + len(value.split()) * tag


_FILTER_ESTIMATES: dict[str, _FilterEstimate] = {
    "batch": _estimate_batch,
    "center": _estimate_center,
    "format": _estimate_format,
    "indent": _estimate_indent,
    "replace": _estimate_replace,
    "slice": _estimate_slice,
    "urlize": _estimate_urlize,
    "wordwrap": _estimate_wordwrap,
}


@pass_context
def _join_filter(
    context: Context, value: Any, d: str = "", attribute: str | int | None = None
) -> str:
    """Jinja2's join filter, raising TemplateError before joining too much."""
    if attribute is not None:
        value = map(make_attrgetter(context.environment, attribute), value)
    separator = len(d) if isinstance(d, str) else 0
    items = _collect_joined(_budget_of(context), value, separator, "the join filter")
    return sync_do_join(context.eval_ctx, items, d)


@pass_context
def _sum_filter(
    context: Context, iterable: Any, attribute: str | int | None = None, start: Any = 0
) -> Any:
    """Jinja2's sum filter, which adds lists or tuples in linear time.

    The builtin sum copies the running total for each item, so adding up many
    lists takes time quadratic in their total length.
    """
    if attribute is not None:
        iterable = map(make_attrgetter(context.environment, attribute), iterable)
    if not isinstance(start, list | tuple):
        return sum(iterable, start)
    kind = list if isinstance(start, list) else tuple
    combined = list(start)
    items = iter(iterable)
    for item in items:
        if not isinstance(item, kind):
            # Adding a different type raises TypeError, as the builtin sum does.
            return sum(itertools.chain([item], items), kind(combined))
        combined.extend(item)
    return kind(combined)


_FILTER_REPLACEMENTS: dict[str, Callable[..., Any]] = {
    "join": _join_filter,
    "sum": _sum_filter,
}


def _call_with_pass_arg(
    function: Callable[..., Any],
    pass_arg: _PassArg | None,
    context: Context,
    value: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Call a filter or test with the context, eval context or environment
    first when ``pass_arg`` marks it as taking one, as Jinja2 itself does."""
    if pass_arg is None:
        return function(value, *args, **kwargs)
    if pass_arg is _PassArg.eval_context:
        return function(context.eval_ctx, value, *args, **kwargs)
    if pass_arg is _PassArg.environment:
        return function(context.environment, value, *args, **kwargs)
    return function(context, value, *args, **kwargs)


def _limit_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter to count as a template operation and to raise
    TemplateError when it builds a value over MAX_RENDERED_CHARS.

    The wrapper takes the context because Jinja2 runs filters that do not
    while it compiles a template, on constant arguments. Validating
    ``'x' | center(1000000000)`` would otherwise build that string.
    """
    pass_arg = _PassArg.from_obj(function)
    estimate = _FILTER_ESTIMATES.get(name)
    operation = f"the {name} filter"
    checks_result = name not in _SELECTING_FILTERS

    @pass_context
    def limited(
        context: _PromptContext, value: Any, /, *args: Any, **kwargs: Any
    ) -> Any:
        budget = context.budget
        budget.tick()
        if estimate is not None:
            size = estimate(context, value, args, kwargs)
            if size is not None and size > MAX_RENDERED_CHARS:
                raise TemplateError(_too_large_estimate(size, operation))
        # _call_with_pass_arg, inlined for the common cases because filters
        # are on the hot path of rendering.
        if pass_arg is None:
            result = function(value, *args, **kwargs)
        elif pass_arg is _PassArg.context:
            result = function(context, value, *args, **kwargs)
        else:
            result = _call_with_pass_arg(
                function, pass_arg, context, value, args, kwargs
            )
        if isinstance(result, str):
            if len(result) > MAX_RENDERED_CHARS:
                raise TemplateError(_too_large(len(result), operation))
        elif isinstance(result, Iterator):
            return budget.limit_iterator(result, operation)
        elif checks_result:
            budget.check_size(result, operation)
        return result

    return limited


def _count_test(function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a test to count as a template operation."""
    pass_arg = _PassArg.from_obj(function)

    @pass_context
    def counted(
        context: _PromptContext, value: Any, /, *args: Any, **kwargs: Any
    ) -> Any:
        context.budget.tick()
        return _call_with_pass_arg(function, pass_arg, context, value, args, kwargs)

    return counted


def _dump_json(value: Any, **kwargs: Any) -> str:
    """Serialize ``value`` like ``json.dumps``, for the tojson filter.

    With an indent, raises TemplateError once the text passes
    MAX_RENDERED_CHARS, before it is all built.
    """
    indent = kwargs.get("indent")
    if indent is None:
        return json.dumps(value, **kwargs)
    width = len(indent) if isinstance(indent, str) else indent
    if isinstance(width, int) and width > _MAX_JSON_INDENT:
        raise TemplateError(
            f"the tojson filter's indent of {width} is over the limit of "
            f"{_MAX_JSON_INDENT}"
        )
    parts = []
    size = 0
    for chunk in json.JSONEncoder(**kwargs).iterencode(value):
        size += len(chunk)
        if size > MAX_RENDERED_CHARS:
            raise TemplateError(_over_size_limit("the tojson filter"))
        parts.append(chunk)
    return "".join(parts)


class _PromptSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with limits on the time and memory of a render.

    Limits for one render of a prompt, all of its messages together: for-loop
    iterations (MAX_LOOP_ITERATIONS, including the items of recursive loop() calls),
    macro and block calls (MAX_MACRO_CALLS), the nesting of macro, block and loop()
    calls (MAX_CALL_DEPTH) and wall-clock time (MAX_RENDER_SECONDS). Validation
    rejects templates with more than MAX_LOOP_NESTING nested for loops.

    Limits on size, as _size_of measures it: MAX_RENDERED_CHARS applies to each
    rendered message, to the output of each macro and block, and to each value that
    +, *, %, ~, a literal, a filter, a method or a global function builds.
    MAX_VALUE_DEPTH applies to the nesting of such values. Where an argument sets a
    width, count, indent or repeat (center, ljust, rjust, zfill, expandtabs,
    replace, translate, join, str.format and % fields, indent, wordwrap, batch,
    slice, urlize, tojson, lipsum, int.to_bytes and *), the size is estimated and
    checked before the value is built. Other values are checked after they are
    built, so one operation can briefly hold a few times MAX_RENDERED_CHARS. Escape
    and urlencode, for example, make text up to about 12 times longer.

    NOTE: these stay unbounded or loosely bounded.
    - The clock is read between template operations, not inside one, so a render can
      overrun MAX_RENDER_SECONDS by its slowest operation, whose time grows with its
      input. The slowest found, the urlize filter on 1,000,000 characters, took
      about 0.4 s with Jinja2 3.1.6 and Python 3.11 on a 2-core AMD EPYC VM. A
      request variable can be longer, up to server.max_body_bytes.
    - Comparisons, ``in`` and hashing are not hooked. Their time grows with the size
      of their operands, which the limits above bound.
    - Request variables are not measured. A template can loop over a large one
      within the loop budget, but a value derived from one, such as a sorted copy,
      is held to MAX_RENDERED_CHARS.
    - Peak memory is a multiple of MAX_RENDERED_CHARS, not the limit itself, because
      every variable that the template sets, in every macro call on the stack, can
      hold a value up to the limit.
    - The limits cap one render. Each request for a slow template still holds the
      event loop for up to MAX_RENDER_SECONDS.
    - Parsing and compiling are not bounded. Together they took about 50 us per
      tag or expression on the same VM, so a template of 200,000 ``{{ q }}`` tags
      (1.2 MB) took about 10 s to validate. Each Renderer parses and compiles it
      again on first use.
    """

    intercepted_binops = frozenset({"+", "*", "**", "%"})
    code_generator_class = _PromptCodeGenerator
    context_class = _PromptContext
    # Generated code joins the output of macros and blocks with this.
    concat = staticmethod(_join_output)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {
            name: _limit_filter(name, _FILTER_REPLACEMENTS.get(name, function))
            for name, function in self.filters.items()
        }
        self.tests = {
            name: _count_test(cast(Callable[..., Any], test))
            for name, test in self.tests.items()
        }
        self.policies["json.dumps_function"] = _dump_json

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _budget_of(context)
        budget.tick()
        _check_binop_size(budget, operator, left, right)
        result = super().call_binop(context, operator, left, right)
        if operator == "%":
            # The estimate of % is loose for escaped or repr'd values.
            budget.check_size(result, "%")
        return result

    def call(
        self, context: Context, function: Any, /, *args: Any, **kwargs: Any
    ) -> Any:
        """Call ``function`` from a template within the render's budget."""
        budget = _budget_of(context)
        budget.tick()
        if isinstance(function, _NESTED_CALLABLES):
            return self._call_nested(context, budget, function, args, kwargs)
        args = _check_call(budget, function, args, kwargs)
        result = super().call(context, function, *args, **kwargs)
        size = budget.size_of(result)
        if size > MAX_RENDERED_CHARS:
            operation = _callable_name(function)
            raise TemplateError(_built_too_large(result, size, operation))
        if size >= _CLOCK_CHECK_SIZE:
            budget.check_clock()
        return result

    def _call_nested(
        self,
        context: Context,
        budget: RenderBudget,
        function: Macro | BlockReference | LoopContext,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Call a macro, block or recursive loop, whose output _join_output bounds."""
        if isinstance(function, LoopContext):
            # loop(items) renders the loop body again for each of the items.
            if args:
                args = (_BudgetedIterable(args[0], budget), *args[1:])
        elif isinstance(function, Macro):
            # Extra arguments become the varargs tuple and kwargs dict.
            if function.catch_varargs:
                budget.check_size(args, f"the arguments of macro {function.name!r}")
            if function.catch_kwargs:
                # Context.call drops Jinja2's own _loop_vars and _block_vars.
                extra = {k: v for k, v in kwargs.items() if k not in _CONTEXT_KWARGS}
                budget.check_size(extra, f"the arguments of macro {function.name!r}")
        budget.enter_call(is_macro=not isinstance(function, LoopContext))
        try:
            return super().call(context, function, *args, **kwargs)
        finally:
            budget.exit_call()

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Return ``value`` wrapped to format in the sandbox within the size
        limits if it is a ``str.format`` or ``str.format_map`` method, or None.

        This is Jinja2 3.1's wrap_str_format with _LimitedFormatter.
        """
        if not isinstance(
            value, types.MethodType | types.BuiltinMethodType
        ) or value.__name__ not in ("format", "format_map"):
            return None
        f_self = value.__self__
        if not isinstance(f_self, str):
            return None
        str_type = type(f_self)
        is_format_map = value.__name__ == "format_map"
        formatter: _LimitedFormatter
        if isinstance(f_self, Markup):
            formatter = _LimitedEscapeFormatter(self, escape=f_self.escape)
        else:
            formatter = _LimitedFormatter(self)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(
                        f"format_map() takes exactly one argument ({len(args)} given)"
                    )
                kwargs = args[0]
                args = ()
            return str_type(formatter.vformat(f_self, args, kwargs))

        return functools.update_wrapper(wrapper, value)

    def count_iterations(self, context: Context, iterable: Any) -> _BudgetedIterable:
        """Return the iterable of a for loop, drawing from the render's budget."""
        return _BudgetedIterable(iterable, _budget_of(context))

    def check_literal(self, context: Context, value: Any) -> Any:
        """Return a list, tuple or dict literal's value, or raise TemplateError
        when it is too large."""
        budget = _budget_of(context)
        budget.tick()
        budget.check_size(value, "a literal")
        return value

    def check_concat(self, context: Context, parts: tuple[Any, ...]) -> tuple[Any, ...]:
        """Return the parts of ``~``, or raise TemplateError when joining them
        would build a value that is too large."""
        budget = _budget_of(context)
        budget.tick()
        size = 0
        all_text = True
        for part in parts:
            if isinstance(part, str):
                size += len(part)
            else:
                all_text = False
                size += budget.size_of(part)
        if size > MAX_RENDERED_CHARS:
            if all_text:
                raise TemplateError(_too_large(size, "~"))
            raise TemplateError(_over_size_limit("~"))
        return parts


def template_environment() -> ImmutableSandboxedEnvironment:
    """Create the sandboxed Jinja2 environment that parses and renders prompts.

    Undefined names raise, output is not HTML-escaped, a trailing newline in a
    template is kept and printing a function raises TemplateError. Rendering
    is held to the limits described on _PromptSandbox.
    """
    return _PromptSandbox(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_reject_callable_output,
    )


def _reject_callable_output(value: Any) -> Any:
    """Pass ``value`` through unless it is a function or method or its text
    would be too long.

    Printing a function would put a Python repr with a memory address into the
    prompt, which is always a template mistake.
    """
    if isinstance(value, str) or type(value) in _PRINTED_SCALARS:
        return value
    # Undefined values are callable too, and raise their own error when printed.
    if callable(value) and not isinstance(value, Undefined):
        raise TemplateError(
            "the template outputs a function instead of a value; call it or remove it"
        )
    if _size_of(value) > MAX_RENDERED_CHARS:
        raise TemplateError(
            f"the template outputs a value whose text would exceed "
            f"{MAX_RENDERED_CHARS} characters; shorten the template or its variables"
        )
    return value
