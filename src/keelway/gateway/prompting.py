"""The prompt step of the pipeline: resolve a reference, pick a variant, render.

A request names a registry prompt with ``prompt`` in the body or the
``X-Keelway-Prompt`` header (which wins) and passes its ``variables``. The
rendered messages come first, followed by any ``messages`` the request sends
(a conversation so far). The prompt's model settings are defaults: a field
the request sets itself wins. Both ``prompt`` and ``variables`` are
keelway's own fields and never reach the provider.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from keelway.experiments.assign import choose
from keelway.experiments.store import ExperimentRecord
from keelway.gateway.auth import Caller
from keelway.gateway.errors import GatewayError, InvalidField
from keelway.governance.errors import NotFound
from keelway.prompts.errors import (
    InvalidReference,
    PromptError,
    TemplateError,
    VariableError,
)
from keelway.prompts.registry import Resolved
from keelway.prompts.render import RenderedPrompt, Renderer
from keelway.prompts.resolver import PromptResolver
from keelway.prompts.versioning import parse_reference
from keelway.providers.anthropic_format import messages_request_to_chat
from keelway.providers.errors import UnsupportedRequest
from keelway.tracing.records import TraceRecord

JSONObject = dict[str, Any]

PROMPT_FIELDS = ("prompt", "variables")


class PromptNotFound(GatewayError):
    """The prompt, its label or its version does not exist."""

    status = 404
    error_type = "not_found_error"
    code = "prompt_not_found"


class PromptVersionRejected(GatewayError):
    """The reference pins a version that review rejected."""

    status = 403
    error_type = "permission_error"
    code = "prompt_version_rejected"


class PromptNotAllowed(GatewayError):
    """The prompt belongs to a team other than the key's."""

    status = 403
    error_type = "permission_error"
    code = "prompt_not_allowed"


@dataclass(slots=True)
class PromptUse:
    """The prompt version a request was rendered from, and its experiment."""

    resolved: Resolved
    variables: JSONObject
    # The request as the client sent it, to render a shadow version from.
    original: JSONObject
    style: str
    experiment: ExperimentRecord | None = None
    variant: str | None = None
    shadow: Resolved | None = None

    @property
    def scope(self) -> str:
        """Return the cache scope: answers never cross prompt versions."""
        return f"{self.resolved.name}@{self.resolved.version}"


def reference_text(request: Request, body: JSONObject) -> str | None:
    """Return the request's prompt reference, header first, or None."""
    header = request.headers.get("x-keelway-prompt")
    if header:
        return header
    value = body.get("prompt")
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField(
            "prompt must be a string such as 'name@production' or 'name@1.2.0'",
            param="prompt",
        )
    return value


class PromptStep:
    """Turns a prompt reference and its variables into a ready request body."""

    def __init__(self, resolver: PromptResolver, renderer: Renderer) -> None:
        self.resolver = resolver
        self.renderer = renderer

    async def apply(
        self,
        request: Request,
        body: JSONObject,
        trace: TraceRecord,
        caller: Caller,
        style: str,
    ) -> PromptUse | None:
        """Render the referenced prompt into ``body`` in place, if there is one."""
        text = reference_text(request, body)
        if text is None:
            if "variables" in body:
                raise InvalidField(
                    "variables need a prompt reference: send 'prompt' as well",
                    param="variables",
                )
            return None
        started = time.perf_counter()
        variables = body.get("variables")
        if variables is None:
            variables = {}
        if not isinstance(variables, dict):
            raise InvalidField("variables must be a JSON object", param="variables")
        history = body.get("messages")
        if history is not None and not isinstance(history, list):
            raise InvalidField(
                "messages must be a list of messages to append after the prompt's "
                "messages, or left out",
                param="messages",
            )
        use = await self._choose(text, body, trace, caller, variables, style)
        rendered = self._render(use.resolved, variables)
        original = dict(body)
        body.clear()
        body.update(_merge(original, rendered, style))
        _record(trace, use, started)
        return use

    async def _choose(
        self,
        text: str,
        body: JSONObject,
        trace: TraceRecord,
        caller: Caller,
        variables: JSONObject,
        style: str,
    ) -> PromptUse:
        try:
            reference = parse_reference(text)
        except InvalidReference as error:
            raise InvalidField(
                str(error), param="prompt", code="invalid_prompt_reference"
            ) from None
        try:
            lookup = await self.resolver.lookup(reference)
        except NotFound as error:
            raise PromptNotFound(error.message, param="prompt") from None
        except PromptError as error:
            raise _unservable(str(reference), error) from None
        resolved = lookup.resolved
        if resolved.team and not caller.is_master and caller.team != resolved.team:
            raise PromptNotAllowed(
                f"prompt {resolved.name!r} belongs to team {resolved.team!r}; "
                "this API key may not use it",
                param="prompt",
            )
        _check_servable(resolved)
        use = PromptUse(resolved, variables, dict(body), style)
        experiment = lookup.experiment
        if experiment is None:
            return use
        use.experiment = experiment
        try:
            if experiment.kind == "ab":
                unit = _unit(experiment, body, trace)
                variant = choose(experiment.name, experiment.variants, unit)
                use.variant = variant.name
                if variant.version != resolved.version:
                    use.resolved = await self.resolver.version(
                        resolved.name, variant.version
                    )
            elif experiment.shadow_version is not None and (
                random.random() < experiment.sample_rate
            ):
                use.variant = "live"
                use.shadow = await self.resolver.version(
                    resolved.name, experiment.shadow_version
                )
        except NotFound as error:
            raise PromptNotFound(error.message, param="prompt") from None
        except PromptError as error:
            raise _unservable(str(reference), error) from None
        return use

    def _render(self, resolved: Resolved, variables: JSONObject) -> RenderedPrompt:
        try:
            return self.renderer.render(resolved.content, variables)
        except VariableError as error:
            raise InvalidField(
                f"prompt {resolved.name}@{resolved.version}: {error}",
                param=f"variables.{error.variable}",
                code="invalid_variable",
            ) from None
        except TemplateError as error:
            raise InvalidField(
                f"prompt {resolved.name}@{resolved.version} failed to render: {error}",
                param="prompt",
                code="template_error",
            ) from None

    def render_shadow(self, use: PromptUse) -> JSONObject:
        """Return the OpenAI chat request the shadow version would have been sent.

        A request to ``/v1/messages`` is rendered in Anthropic's shape, like
        its live call, and then translated, because shadow calls go to the
        provider as OpenAI chat requests.
        """
        assert use.shadow is not None
        rendered = self._render(use.shadow, use.variables)
        body = _merge(use.original, rendered, use.style)
        body.pop("stream", None)
        body.pop("stream_options", None)
        if use.style == "anthropic":
            try:
                body = messages_request_to_chat(body)
            except UnsupportedRequest as error:
                raise InvalidField(str(error), param=error.param) from None
        return body


def _unservable(reference: str, error: PromptError) -> InvalidField:
    """Return the error for a stored version that no longer passes validation."""
    return InvalidField(
        f"prompt {reference} cannot be rendered: {error}",
        param="prompt",
        code="template_error",
    )


def _check_servable(resolved: Resolved) -> None:
    """Raise unless the version may be served: rejected versions never are.

    Proposed versions are served only when a request pins them by exact
    version (labels and prefixes resolve to approved versions, except
    unprotected labels), for staging checks and evaluations.
    """
    if resolved.status == "rejected":
        raise PromptVersionRejected(
            f"{resolved.name}@{resolved.version} was rejected in review and is "
            "not served",
            param="prompt",
        )


def _unit(experiment: ExperimentRecord, body: JSONObject, trace: TraceRecord) -> str:
    """Return the user or session the variant sticks to; random without one."""
    if experiment.sticky == "session":
        metadata = body.get("metadata")
        session = metadata.get("session_id") if isinstance(metadata, dict) else None
        if isinstance(session, str | int) and str(session):
            return f"session:{session}"
    elif trace.user:
        return f"user:{trace.user}"
    return f"anonymous:{uuid.uuid4().hex}"


def _merge(original: JSONObject, rendered: RenderedPrompt, style: str) -> JSONObject:
    body = {k: v for k, v in original.items() if k not in PROMPT_FIELDS}
    extra = body.pop("messages", None)
    history = extra if isinstance(extra, list) else []
    if style == "anthropic":
        merged = _anthropic_settings(rendered)
        system = [m["content"] for m in rendered.messages if m["role"] == "system"]
        turns = [m for m in rendered.messages if m["role"] != "system"]
        if system:
            merged["system"] = _system_with(system, body)
        merged.update(body)
        merged["messages"] = [*turns, *history]
        return merged
    merged = dict(rendered.settings)
    merged.update(body)
    merged["messages"] = [*rendered.messages, *history]
    return merged


def _system_with(prompt_system: list[str], body: JSONObject) -> Any:
    """Return the prompt's system text followed by the request's own ``system``.

    The request's ``system`` may be a string or a list of content blocks. Any
    other value stays in ``body``, where the request schema rejects it.
    """
    text = "\n\n".join(prompt_system)
    own = body.pop("system", None)
    if own is None or own == "":
        return text
    if isinstance(own, str):
        return f"{text}\n\n{own}"
    if isinstance(own, list):
        return [{"type": "text", "text": text}, *own]
    body["system"] = own
    return text


def _anthropic_settings(rendered: RenderedPrompt) -> JSONObject:
    settings = rendered.settings
    if "tools" in settings or "response_format" in settings:
        raise InvalidField(
            "this prompt sets tools or a response format, which /v1/messages "
            "cannot take from a prompt; call /v1/chat/completions",
            param="prompt",
        )
    merged: JSONObject = {}
    for name in ("model", "max_tokens", "temperature", "top_p"):
        if name in settings:
            merged[name] = settings[name]
    if "stop" in settings:
        merged["stop_sequences"] = settings["stop"]
    return merged


def _record(trace: TraceRecord, use: PromptUse, started: float) -> None:
    resolved = use.resolved
    trace.prompt = resolved.name
    trace.prompt_version = resolved.version
    details: JSONObject = {
        "name": resolved.name,
        "version": resolved.version,
        "label": resolved.label,
        "content_hash": resolved.content_hash,
    }
    if use.experiment is not None:
        trace.experiment = use.experiment.name
        trace.variant = use.variant
        details["experiment"] = use.experiment.name
        details["variant"] = use.variant
        if use.shadow is not None:
            details["shadow_version"] = use.shadow.version
    trace.span("prompt", started, time.perf_counter(), attributes=details)
    trace.attributes = {**(trace.attributes or {}), "prompt": details}
