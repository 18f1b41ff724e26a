"""The admin API under ``/api/v1``: users, prompts, experiments and the audit log.

Calls authenticate with a user's key (``Authorization: Bearer kwu-...``) or
the master key, and each one is checked against the caller's roles by the
service it reaches. Errors use the gateway's OpenAI-style error body.
"""

from __future__ import annotations

import asyncio
import hmac
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from keelway.experiments.assign import Variant
from keelway.experiments.results import experiment_report
from keelway.experiments.store import (
    EXPERIMENT_NAME,
    MAX_MIN_SAMPLES,
    VARIANT_NAME,
    ExperimentStore,
)
from keelway.gateway.auth import MASTER_KEY_ENV, presented_key
from keelway.gateway.body import read_json_object
from keelway.gateway.errors import AuthenticationFailed, GatewayError, InvalidField
from keelway.gateway.responses import error_response, json_response
from keelway.governance import (
    AuditLog,
    GovernanceError,
    Permission,
    Principal,
    UserStore,
)
from keelway.prompts.content import PromptContent
from keelway.prompts.diff import diff_contents
from keelway.prompts.errors import (
    InvalidPrompt,
    InvalidReference,
    PromptError,
    TemplateError,
    VariableError,
)
from keelway.prompts.registry import PromptRegistry
from keelway.prompts.render import Renderer
from keelway.prompts.versioning import Version, parse_reference, validate_label
from keelway.store.database import Database

JSONObject = dict[str, Any]
Handler = Callable[[Request], Awaitable[Response]]

# Team names are stored in columns of 200 characters.
MAX_TEAM_LENGTH = 200


@dataclass(slots=True)
class Admin:
    """The services behind the admin API."""

    database: Database
    audit: AuditLog
    users: UserStore
    registry: PromptRegistry
    experiments: ExperimentStore
    renderer: Renderer
    master_key: str | None


def _admin(request: Request) -> Admin:
    admin: Admin = request.app.state.admin
    return admin


async def _principal(request: Request) -> Principal:
    admin = _admin(request)
    secret = presented_key(request)
    if secret is None:
        raise AuthenticationFailed(
            "missing user key: send it as 'Authorization: Bearer <key>'",
            code="missing_user_key",
        )
    if admin.master_key and hmac.compare_digest(
        secret.encode("utf-8", "surrogatepass"), admin.master_key.encode()
    ):
        return Principal.master()
    return await asyncio.to_thread(admin.users.authenticate, secret)


def _to_gateway(error: Exception) -> GatewayError:
    if isinstance(error, GovernanceError):
        kinds = {
            401: "authentication_error",
            403: "permission_error",
            404: "not_found_error",
            409: "conflict_error",
        }
        return GatewayError(
            error.message,
            status=error.status,
            code=error.code,
            error_type=kinds.get(error.status, "invalid_request_error"),
        )
    if isinstance(error, VariableError):
        return InvalidField(
            str(error), param=f"variables.{error.variable}", code="invalid_variable"
        )
    if isinstance(error, TemplateError):
        return InvalidField(str(error), code="template_error")
    if isinstance(error, InvalidReference):
        return InvalidField(str(error), code="invalid_prompt_reference")
    if isinstance(error, InvalidPrompt) and error.path:
        return InvalidField(
            str(error), param=f"content.{error.path}", code="invalid_prompt"
        )
    return InvalidField(str(error), code="invalid_prompt")


def _check_request_text(request: Request) -> None:
    """Reject a NUL character in a path or query parameter.

    No stored name contains one, and PostgreSQL rejects NUL in any query
    parameter, so it would otherwise fail the lookup with a 500.
    """
    for name, value in request.path_params.items():
        if isinstance(value, str) and "\x00" in value:
            raise InvalidField(
                f"path parameter {name!r} must not contain NUL characters",
                param=name,
            )
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise InvalidField(
                f"query parameter {name!r} must not contain NUL characters",
                param=name,
            )


def endpoint(
    work: Callable[[Request, Admin, Principal], Awaitable[tuple[Any, int]]],
) -> Handler:
    """Wrap an admin handler: authenticate, run, and map errors to responses."""

    async def handler(request: Request) -> Response:
        admin = _admin(request)
        try:
            actor = await _principal(request)
            _check_request_text(request)
            body, status = await work(request, admin, actor)
        except GatewayError as error:
            return error_response(error)
        except (GovernanceError, PromptError) as error:
            return error_response(_to_gateway(error))
        return json_response(body, status)

    handler.__name__ = work.__name__
    return handler


async def _body(request: Request) -> JSONObject:
    server = request.app.state.pipeline.config.server
    return await read_json_object(request, server.max_body_bytes, server.body_timeout)


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return (
        length != "0" if length is not None else "transfer-encoding" in request.headers
    )


def _text(body: JSONObject, name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidField(f"missing required field {name!r}", param=name)
        return None
    if not isinstance(value, str):
        raise InvalidField(f"{name} must be a string", param=name)
    _check_no_nul(value, name)
    return value


def _check_no_nul(value: str, param: str) -> None:
    # The store's PostgreSQL text columns cannot hold NUL characters.
    if "\x00" in value:
        raise InvalidField(f"{param} must not contain NUL characters", param=param)


def _team(body: JSONObject) -> str | None:
    team = _text(body, "team", required=False)
    if team is not None and (not team.strip() or len(team) > MAX_TEAM_LENGTH):
        raise InvalidField(
            f"team must be 1 to {MAX_TEAM_LENGTH} characters and not only whitespace",
            param="team",
        )
    return team


def _label(request: Request) -> str:
    """Return the label path parameter, or raise InvalidField if it is invalid."""
    label: str = request.path_params["label"]
    try:
        validate_label(label)
    except InvalidReference as error:
        raise InvalidField(str(error), param="label", code="invalid_value") from None
    return label


def _content(body: JSONObject) -> PromptContent:
    content = body.get("content")
    if not isinstance(content, dict):
        raise InvalidField(
            "content must be a prompt definition object (messages, variables, "
            "model, links)",
            param="content",
        )
    return PromptContent.from_dict(content)


def _run(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
    return asyncio.to_thread(function, *args, **kwargs)


def _require_reader(admin: Admin, actor: Principal, permission: Permission) -> None:
    if not actor.teams_with(permission):
        raise admin.audit.deny(
            actor, "read", None, f"{actor.name} has no role that may read this"
        )


# Users


@endpoint
async def list_users(request: Request, admin: Admin, actor: Principal) -> Any:
    _require_reader(admin, actor, Permission.READ_PROMPTS)
    users = await _run(admin.users.list, actor)
    return {"data": [user.as_dict() for user in users]}, 200


def _grants(body: JSONObject) -> list[tuple[str, str | None]]:
    roles = body.get("roles", [])
    if not isinstance(roles, list):
        raise InvalidField("roles must be a list of {role, team}", param="roles")
    grants = []
    for index, item in enumerate(roles):
        if not isinstance(item, dict) or not isinstance(item.get("role"), str):
            raise InvalidField(
                f"roles[{index}] must be an object with a string 'role'",
                param=f"roles[{index}]",
            )
        team = item.get("team")
        if team is not None and not isinstance(team, str):
            raise InvalidField(
                f"roles[{index}].team must be a string", param=f"roles[{index}].team"
            )
        _check_no_nul(item["role"], f"roles[{index}].role")
        if team is not None:
            _check_no_nul(team, f"roles[{index}].team")
        grants.append((item["role"], team))
    return grants


@endpoint
async def create_user(request: Request, admin: Admin, actor: Principal) -> Any:
    body = await _body(request)
    name = _text(body, "name")
    assert name is not None
    user, secret = await _run(admin.users.create, actor, name, _grants(body))
    return {**user.as_dict(), "key": secret}, 201


@endpoint
async def grant_role(request: Request, admin: Admin, actor: Principal) -> Any:
    body = await _body(request)
    role = _text(body, "role")
    name = request.path_params["name"]
    user = await _run(
        admin.users.grant, actor, name, role, _text(body, "team", required=False)
    )
    return user.as_dict(), 200


@endpoint
async def revoke_role(request: Request, admin: Admin, actor: Principal) -> Any:
    role = request.query_params.get("role")
    if not role:
        raise InvalidField("missing query parameter 'role'", param="role")
    team = request.query_params.get("team")
    name = request.path_params["name"]
    user = await _run(admin.users.revoke, actor, name, role, team)
    return user.as_dict(), 200


# Prompts


@endpoint
async def list_prompts(request: Request, admin: Admin, actor: Principal) -> Any:
    _require_reader(admin, actor, Permission.READ_PROMPTS)
    prompts = await _run(admin.registry.prompts, actor)
    return {"data": [prompt.as_dict() for prompt in prompts]}, 200


@endpoint
async def create_prompt(request: Request, admin: Admin, actor: Principal) -> Any:
    body = await _body(request)
    name = _text(body, "name")
    assert name is not None
    record = await _run(
        admin.registry.create,
        actor,
        name,
        _content(body),
        team=_team(body),
        message=_text(body, "message", required=False),
    )
    return record.as_dict(), 201


@endpoint
async def show_prompt(request: Request, admin: Admin, actor: Principal) -> Any:
    _require_reader(admin, actor, Permission.READ_PROMPTS)
    name = request.path_params["name"]
    await _run(admin.registry.authorize_read, actor, name)
    summary = await _run(admin.registry.show, name)
    versions = await _run(admin.registry.versions, name)
    return {
        **summary.as_dict(),
        "versions": [v.as_dict(content=False) for v in versions],
    }, 200


@endpoint
async def propose_version(request: Request, admin: Admin, actor: Principal) -> Any:
    body = await _body(request)
    record = await _run(
        admin.registry.propose,
        actor,
        request.path_params["name"],
        _content(body),
        message=_text(body, "message", required=False),
        bump=_text(body, "bump", required=False),
    )
    if record is None:
        return {"unchanged": True, "version": None}, 200
    return record.as_dict(), 201


@endpoint
async def show_version(request: Request, admin: Admin, actor: Principal) -> Any:
    _require_reader(admin, actor, Permission.READ_PROMPTS)
    params = request.path_params
    await _run(admin.registry.authorize_read, actor, params["name"])
    record = await _run(admin.registry.version, params["name"], params["version"])
    return record.as_dict(), 200


async def _review(
    request: Request, admin: Admin, actor: Principal, approve: bool
) -> Any:
    body = await _body(request) if _has_body(request) else {}
    params = request.path_params
    record = await _run(
        admin.registry.review,
        actor,
        params["name"],
        params["version"],
        approve=approve,
        comment=_text(body, "comment", required=False),
    )
    return record.as_dict(content=False), 200


@endpoint
async def approve_version(request: Request, admin: Admin, actor: Principal) -> Any:
    return await _review(request, admin, actor, True)


@endpoint
async def reject_version(request: Request, admin: Admin, actor: Principal) -> Any:
    return await _review(request, admin, actor, False)


@endpoint
async def set_label(request: Request, admin: Admin, actor: Principal) -> Any:
    body = await _body(request)
    version = _text(body, "version")
    params = request.path_params
    previous, current = await _run(
        admin.registry.set_label, actor, params["name"], params["label"], version
    )
    return {"label": params["label"], "from": previous, "to": current}, 200


@endpoint
async def remove_label(request: Request, admin: Admin, actor: Principal) -> Any:
    # Checked here because the label goes into the audit event's target,
    # a 400-character column, before the registry looks it up.
    label = _label(request)
    previous = await _run(
        admin.registry.remove_label, actor, request.path_params["name"], label
    )
    return {"label": label, "from": previous, "to": None}, 200


@endpoint
async def rollback_label(request: Request, admin: Admin, actor: Principal) -> Any:
    label = _label(request)
    previous, current = await _run(
        admin.registry.rollback, actor, request.path_params["name"], label
    )
    return {"label": label, "from": previous, "to": current}, 200


@endpoint
async def prompt_history(request: Request, admin: Admin, actor: Principal) -> Any:
    _require_reader(admin, actor, Permission.READ_PROMPTS)
    await _run(admin.registry.authorize_read, actor, request.path_params["name"])
    entries = await _run(admin.registry.history, request.path_params["name"])
    return {"data": [entry.as_dict() for entry in entries]}, 200


async def _content_at(
    admin: Admin, actor: Principal, name: str, selector: str
) -> PromptContent:
    await _run(admin.registry.authorize_read, actor, name)
    reference = parse_reference(f"{name}@{selector}")
    resolved = await _run(admin.registry.resolve, reference)
    content: PromptContent = resolved.content
    return content


@endpoint
async def prompt_diff(request: Request, admin: Admin, actor: Principal) -> Any:
    _require_reader(admin, actor, Permission.READ_PROMPTS)
    name = request.path_params["name"]
    old, new = request.query_params.get("from"), request.query_params.get("to")
    if not old or not new:
        raise InvalidField(
            "send the versions or labels to compare as ?from=...&to=...",
            param="from" if not old else "to",
        )
    # difflib takes seconds on large prompts, so the diff runs off the event loop.
    text = await _run(
        diff_contents,
        await _content_at(admin, actor, name, old),
        await _content_at(admin, actor, name, new),
        f"{name}@{old}",
        f"{name}@{new}",
    )
    return {"from": old, "to": new, "diff": text}, 200


@endpoint
async def render_prompt(request: Request, admin: Admin, actor: Principal) -> Any:
    _require_reader(admin, actor, Permission.READ_PROMPTS)
    body = await _body(request)
    name = request.path_params["name"]
    selector = _text(body, "reference", required=False)
    if selector is None:
        selector = "production"
    variables = body.get("variables")
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise InvalidField("variables must be a JSON object", param="variables")
    content = await _content_at(admin, actor, name, selector)
    rendered = await _run(admin.renderer.render, content, variables)
    return {"messages": rendered.messages, "settings": rendered.settings}, 200


# Experiments


def _variants(body: JSONObject) -> list[Variant]:
    items = body.get("variants")
    if not isinstance(items, list):
        raise InvalidField(
            "variants must be a list of {name, version, weight}", param="variants"
        )
    variants = []
    for index, item in enumerate(items):
        where = f"variants[{index}]"
        if not isinstance(item, dict):
            raise InvalidField(f"{where} must be an object", param=where)
        name, version, weight = (
            item.get("name"),
            item.get("version"),
            item.get("weight"),
        )
        if not isinstance(name, str) or not isinstance(version, str):
            raise InvalidField(
                f"{where} needs string 'name' and 'version'", param=where
            )
        if VARIANT_NAME.fullmatch(name) is None:
            raise InvalidField(
                f"invalid variant name {name!r}: use 1-100 letters, digits, '.', "
                "'_' or '-', starting with a letter or digit",
                param=f"{where}.name",
            )
        _check_version(version, f"{where}.version")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise InvalidField(f"{where}.weight must be a number", param=where)
        variants.append(Variant(name, version, float(weight)))
    return variants


def _check_version(version: str, param: str) -> None:
    try:
        Version.parse(version)
    except InvalidReference as error:
        raise InvalidField(str(error), param=param) from None


def _number(body: JSONObject, name: str, default: float) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidField(f"{name} must be a number", param=name)
    return float(value)


def _min_samples(body: JSONObject) -> int:
    value = body.get("min_samples", 100)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField("min_samples must be an integer", param="min_samples")
    if not 1 <= value <= MAX_MIN_SAMPLES:
        raise InvalidField(
            f"min_samples must be from 1 to {MAX_MIN_SAMPLES}, got {value}",
            param="min_samples",
        )
    return value


@endpoint
async def create_experiment(request: Request, admin: Admin, actor: Principal) -> Any:
    body = await _body(request)
    name, prompt = _text(body, "name"), _text(body, "prompt")
    assert name is not None and prompt is not None
    if EXPERIMENT_NAME.fullmatch(name) is None:
        raise InvalidField(
            f"invalid experiment name {name!r}: use 1-128 letters, digits, '.', "
            "'_' or '-', starting with a letter or digit",
            param="name",
        )
    label = _text(body, "label", required=False) or "production"
    kind = _text(body, "kind", required=False) or "ab"
    alpha = _number(body, "alpha", 0.05)
    min_samples = _min_samples(body)
    description = _text(body, "description", required=False)
    if kind == "ab":
        record = await _run(
            admin.experiments.create_ab,
            actor,
            name,
            prompt,
            label,
            _variants(body),
            sticky=_text(body, "sticky", required=False) or "user",
            alpha=alpha,
            min_samples=min_samples,
            description=description,
        )
    elif kind == "shadow":
        candidate = _text(body, "shadow_version")
        assert candidate is not None
        _check_version(candidate, "shadow_version")
        record = await _run(
            admin.experiments.create_shadow,
            actor,
            name,
            prompt,
            label,
            candidate,
            sample_rate=_number(body, "sample_rate", 1.0),
            alpha=alpha,
            min_samples=min_samples,
            description=description,
        )
    else:
        raise InvalidField(f"kind must be 'ab' or 'shadow', got {kind!r}", param="kind")
    return record.as_dict(), 201


@endpoint
async def list_experiments(request: Request, admin: Admin, actor: Principal) -> Any:
    _require_reader(admin, actor, Permission.READ_EXPERIMENTS)
    records = await _run(admin.experiments.all)
    return {"data": [record.as_dict() for record in records]}, 200


@endpoint
async def show_experiment(request: Request, admin: Admin, actor: Principal) -> Any:
    _require_reader(admin, actor, Permission.READ_EXPERIMENTS)
    record = await _run(admin.experiments.get, request.path_params["name"])
    return record.as_dict(), 200


@endpoint
async def stop_experiment(request: Request, admin: Admin, actor: Principal) -> Any:
    record = await _run(admin.experiments.stop, actor, request.path_params["name"])
    return record.as_dict(), 200


@endpoint
async def report_experiment(request: Request, admin: Admin, actor: Principal) -> Any:
    _require_reader(admin, actor, Permission.READ_EXPERIMENTS)
    report = await _run(
        experiment_report,
        admin.database,
        admin.experiments,
        request.path_params["name"],
    )
    return report.to_dict(), 200


# Audit


@endpoint
async def list_audit(request: Request, admin: Admin, actor: Principal) -> Any:
    await _run(admin.audit.require, actor, Permission.READ_AUDIT, "audit.read", None)
    query = request.query_params
    try:
        limit = int(query.get("limit", "100"))
    except ValueError:
        raise InvalidField("limit must be an integer", param="limit") from None
    if not 1 <= limit <= 10_000:
        raise InvalidField("limit must be from 1 to 10000", param="limit")
    events = await _run(
        admin.audit.list,
        actor=query.get("actor"),
        action=query.get("action"),
        target=query.get("target"),
        outcome=query.get("outcome"),
        limit=limit,
    )
    return {"data": [event.as_dict() for event in events]}, 200


ROUTES: list[tuple[str, Handler, list[str]]] = [
    ("/api/v1/users", list_users, ["GET"]),
    ("/api/v1/users", create_user, ["POST"]),
    ("/api/v1/users/{name}/roles", grant_role, ["POST"]),
    ("/api/v1/users/{name}/roles", revoke_role, ["DELETE"]),
    ("/api/v1/prompts", list_prompts, ["GET"]),
    ("/api/v1/prompts", create_prompt, ["POST"]),
    ("/api/v1/prompts/{name}", show_prompt, ["GET"]),
    ("/api/v1/prompts/{name}/versions", propose_version, ["POST"]),
    ("/api/v1/prompts/{name}/versions/{version}", show_version, ["GET"]),
    ("/api/v1/prompts/{name}/versions/{version}/approve", approve_version, ["POST"]),
    ("/api/v1/prompts/{name}/versions/{version}/reject", reject_version, ["POST"]),
    ("/api/v1/prompts/{name}/labels/{label}", set_label, ["PUT"]),
    ("/api/v1/prompts/{name}/labels/{label}", remove_label, ["DELETE"]),
    ("/api/v1/prompts/{name}/labels/{label}/rollback", rollback_label, ["POST"]),
    ("/api/v1/prompts/{name}/history", prompt_history, ["GET"]),
    ("/api/v1/prompts/{name}/diff", prompt_diff, ["GET"]),
    ("/api/v1/prompts/{name}/render", render_prompt, ["POST"]),
    ("/api/v1/experiments", list_experiments, ["GET"]),
    ("/api/v1/experiments", create_experiment, ["POST"]),
    ("/api/v1/experiments/{name}", show_experiment, ["GET"]),
    ("/api/v1/experiments/{name}/stop", stop_experiment, ["POST"]),
    ("/api/v1/experiments/{name}/report", report_experiment, ["GET"]),
    ("/api/v1/audit", list_audit, ["GET"]),
]


def build_admin(
    database: Database, registry: PromptRegistry, experiments: ExperimentStore
) -> Admin:
    """Build the admin API's services over the store."""
    audit = registry.audit
    return Admin(
        database,
        audit,
        UserStore(database, audit),
        registry,
        experiments,
        Renderer(),
        os.environ.get(MASTER_KEY_ENV) or None,
    )
