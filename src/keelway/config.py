"""The YAML configuration file and its validation.

Values of the form ``${NAME}`` are read from the environment when the file
loads, so secrets stay out of the file. Errors name the path of the bad field
(``models.gpt-4o.deployments[0].base_url``) and what was expected.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from keelway.cache.config import CacheConfig
from keelway.guardrails.config import GuardrailsConfig
from keelway.home import keelway_home
from keelway.limits.config import LimitsConfig

PayloadMode = Literal["full", "redacted", "metadata_only", "none"]

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_USERINFO = re.compile(r"//[^/@\s]*@")


def hide_userinfo(text: str) -> str:
    """Replace the user and password of every URL in ``text`` with ``***``."""
    return _USERINFO.sub("//***@", text)


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    """Seconds to wait on an upstream: to connect, for a stream's first chunk
    and for the whole call."""

    connect: float = Field(5.0, gt=0)
    first_token: float | None = Field(None, gt=0)
    total: float = Field(600.0, gt=0)


class PriceOverride(_Strict):
    """USD per million tokens, replacing the shipped price table's entry."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)


class DeploymentConfig(_Strict):
    """One upstream that serves a model: a provider, its model and credentials."""

    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    name: str | None = None
    base_url: str | None = None
    api_key: str | None = Field(None, repr=False)
    api_version: str | None = None
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    timeout: Timeouts = Timeouts()
    max_connections: int = Field(100, ge=1)
    # Share of the group's traffic under the weighted strategy.
    weight: float = Field(1.0, gt=0)
    # Requests and tokens per minute this deployment may take; a request
    # over either goes to another deployment or fallback.
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    price: PriceOverride | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/") if value else value


RoutingStrategy = Literal["weighted", "least_busy", "lowest_latency", "lowest_cost"]


class ModelGroup(_Strict):
    """A public model name, the deployments that serve it and its fallbacks."""

    deployments: list[DeploymentConfig] = Field(min_length=1)
    strategy: RoutingStrategy = "weighted"
    # A request field (``user``) or ``metadata.<key>`` whose value pins a
    # caller to one deployment while that deployment stays available.
    sticky: str | None = None
    fallbacks: list[str] = Field(default_factory=list)
    context_window_fallbacks: list[str] = Field(default_factory=list)
    content_policy_fallbacks: list[str] = Field(default_factory=list)

    @field_validator("sticky")
    @classmethod
    def _check_sticky(cls, value: str | None) -> str | None:
        if value is None or value == "user":
            return value
        if value.startswith("metadata.") and len(value) > len("metadata."):
            return value
        raise ValueError("expected 'user' or 'metadata.<key>'")


class ServerConfig(_Strict):
    """Where the gateway listens and how much it accepts."""

    host: str = "127.0.0.1"
    port: int = Field(4000, ge=0, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    # Seconds a client has to send its whole request body; slower gets 408.
    body_timeout: float = Field(30.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class DatabaseConfig(_Strict):
    """The store. ``url`` is a SQLAlchemy URL; empty means SQLite in KEELWAY_HOME."""

    url: str | None = None


class TracingConfig(_Strict):
    """How traces are kept and written."""

    payloads: PayloadMode = "full"
    max_payload_bytes: int = Field(64 * 1024, ge=256)
    queue_size: int = Field(10_000, ge=1)
    batch_size: int = Field(500, ge=1)
    # How long the writer waits for a batch to fill before it writes what it
    # has; longer waits mean fewer, larger transactions at low traffic.
    flush_interval_ms: float = Field(50.0, ge=0, le=10_000)
    when_full: Literal["wait", "drop"] = "wait"


class AuthConfig(_Strict):
    """How virtual keys are checked."""

    key_cache_seconds: float = Field(1.0, ge=0)


RoutingAction = Literal["retry", "fallback", "return"]


class RetryConfig(_Strict):
    """Retries of one request within a model group, with exponential backoff."""

    max_retries: int = Field(2, ge=0, le=10)
    backoff_base: float = Field(0.25, ge=0)
    backoff_max: float = Field(8.0, ge=0)
    # A Retry-After longer than this is not waited for: the request moves
    # on to the next deployment or fallback instead.
    max_retry_after: float = Field(30.0, ge=0)


class BreakerConfig(_Strict):
    """When a deployment's circuit opens and how long it stays open."""

    failures: int = Field(5, ge=1)
    window_seconds: float = Field(60.0, gt=0)
    cooldown_seconds: float = Field(30.0, gt=0)


class ErrorPolicy(_Strict):
    """The action a request takes after each class of provider error."""

    rate_limited: RoutingAction = "retry"
    overloaded: RoutingAction = "retry"
    server_error: RoutingAction = "retry"
    timeout: RoutingAction = "retry"
    connection: RoutingAction = "retry"
    invalid_response: RoutingAction = "retry"
    context_window_exceeded: RoutingAction = "fallback"
    content_policy: RoutingAction = "return"
    authentication: RoutingAction = "fallback"
    bad_request: RoutingAction = "return"


class RoutingConfig(_Strict):
    """Retries, circuit breakers and the error policy, for every model group."""

    retries: RetryConfig = RetryConfig()
    circuit_breaker: BreakerConfig = BreakerConfig()
    policy: ErrorPolicy = ErrorPolicy()


class ComplexityExamples(_Strict):
    """Labelled prompts that train a complexity router's embedding classifier."""

    simple: list[str] = Field(default_factory=list)
    complex: list[str] = Field(default_factory=list)


class ComplexityRouterConfig(_Strict):
    """A public model name that sends each request to a small or a large group."""

    simple: str = Field(min_length=1)
    complex: str = Field(min_length=1)
    # Requests scoring at or above this go to the ``complex`` group.
    threshold: float = Field(0.5, ge=0, le=1)
    # A model group serving embeddings; without one only the cheap features
    # (length, code, reasoning cues, tools, turns) decide.
    embedding_model: str | None = None
    # Share of the score that comes from the embedding classifier.
    embedding_weight: float = Field(0.6, ge=0, le=1)
    examples: ComplexityExamples = ComplexityExamples()


class PricingConfig(_Strict):
    """Per-model price overrides in USD per million tokens."""

    overrides: dict[str, PriceOverride] = Field(default_factory=dict)


class PromptsConfig(_Strict):
    """The prompt registry and experiments on the gateway."""

    # Labels that take approved versions only.
    protected_labels: list[str] = Field(default_factory=lambda: ["production"])
    # Seconds between reads of the registry generation; 0 reads it on every
    # prompt request, so a label move reaches each replica on its next request.
    check_interval: float = Field(0.0, ge=0)
    # Shadow calls running at once before new ones are dropped and counted.
    max_shadow_calls: int = Field(64, ge=1)
    # A shadow call starts a random delay of up to this many milliseconds
    # after its live answer, off the moment the client's next request comes.
    shadow_delay_ms: float = Field(50.0, ge=0, le=60_000)
    # Labels that move only to a version with a passing eval gate against
    # the version the label points at now (`keelway eval gate`).
    gated_labels: list[str] = Field(default_factory=list)
    # The dataset a gated label's gate must have run on, by label; a label
    # missing here takes a gate on any dataset.
    gate_datasets: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_gate_datasets(self) -> PromptsConfig:
        extra = sorted(set(self.gate_datasets) - set(self.gated_labels))
        if extra:
            raise ValueError(
                f"gate_datasets names labels that are not in gated_labels: {extra}"
            )
        return self

    @field_validator("protected_labels", "gated_labels")
    @classmethod
    def _check_labels(cls, labels: list[str]) -> list[str]:
        from keelway.prompts.errors import InvalidReference
        from keelway.prompts.versioning import validate_label

        for label in labels:
            try:
                validate_label(label)
            except InvalidReference as error:
                raise ValueError(str(error)) from None
        return labels


class OnlineEvalConfig(_Strict):
    """Evaluation of a sample of production traces, after they are written."""

    enabled: bool = False
    # Share of traces evaluated, chosen by a hash of the trace id.
    sample_rate: float = Field(0.1, ge=0, le=1)
    # Evaluator specs, as in a dataset; kinds that need an expected answer
    # cannot score production traffic.
    evaluators: list[dict[str, Any]] = Field(default_factory=list)
    # Only traces of these prompts; empty means every trace.
    prompts: list[str] = Field(default_factory=list)
    # The prompt variable that holds the retrieved context, for RAG metrics.
    context_variable: str = "context"
    # Sampled traces waiting for evaluation; more are dropped and counted.
    queue_size: int = Field(1000, ge=1, le=1_000_000)
    concurrency: int = Field(2, ge=1, le=64)
    # Verdicts behind each failure ratio in /metrics.
    window: int = Field(1000, ge=10, le=1_000_000)

    @field_validator("evaluators")
    @classmethod
    def _check_evaluators(cls, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from keelway.evals.base import EvaluatorConfigError
        from keelway.evals.evaluators import build

        for spec in specs:
            try:
                build(spec)
            except EvaluatorConfigError as error:
                raise ValueError(str(error)) from None
        return specs


class EvalsConfig(_Strict):
    """Eval runs and online evaluation."""

    # The model group that embedding-based evaluators call.
    embedding_model: str = "all-minilm-l6-v2"
    online: OnlineEvalConfig = OnlineEvalConfig()


class Config(_Strict):
    """The whole keelway configuration."""

    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    tracing: TracingConfig = TracingConfig()
    auth: AuthConfig = AuthConfig()
    pricing: PricingConfig = PricingConfig()
    routing: RoutingConfig = RoutingConfig()
    models: dict[str, ModelGroup] = Field(default_factory=dict)
    routers: dict[str, ComplexityRouterConfig] = Field(default_factory=dict)
    cache: CacheConfig = CacheConfig()
    limits: LimitsConfig = LimitsConfig()
    evals: EvalsConfig = EvalsConfig()
    prompts: PromptsConfig = PromptsConfig()
    guardrails: GuardrailsConfig = GuardrailsConfig()

    @model_validator(mode="after")
    def _check_fallbacks(self) -> Config:
        self._check_deployment_names()
        for name, group in self.models.items():
            lists = {
                "fallbacks": group.fallbacks,
                "context_window_fallbacks": group.context_window_fallbacks,
                "content_policy_fallbacks": group.content_policy_fallbacks,
            }
            for field, targets in lists.items():
                for index, target in enumerate(targets):
                    if target not in self.models:
                        raise ValueError(
                            f"models.{name}.{field}[{index}]: no model group"
                            f" named {target!r}"
                        )
                    if target == name:
                        raise ValueError(
                            f"models.{name}.{field}[{index}]: a group cannot"
                            " fall back to itself"
                        )
        for name, router in self.routers.items():
            self._check_router(name, router)
        self._check_cache()
        return self

    def _check_cache(self) -> None:
        semantic = self.cache.semantic
        uses_semantic = semantic.enabled or any(
            group.semantic for group in self.cache.groups.values()
        )
        if uses_semantic and semantic.embedding_model not in self.models:
            raise ValueError(
                "cache.semantic.embedding_model: no model group named"
                f" {semantic.embedding_model!r} serves the embeddings"
            )
        for name in self.cache.groups:
            if name not in self.models:
                raise ValueError(f"cache.groups.{name}: no model group named {name!r}")

    def _check_deployment_names(self) -> None:
        # Breakers, stats and deployment rate limits are keyed by the name.
        seen: dict[str, str] = {}
        for group, spec in self.models.items():
            for index, deployment in enumerate(spec.deployments):
                name = deployment.name or f"{group}/{index}"
                path = f"models.{group}.deployments[{index}].name"
                if name in seen:
                    raise ValueError(
                        f"{path}: deployment name {name!r} is also used at {seen[name]}"
                    )
                seen[name] = path

    def _check_router(self, name: str, router: ComplexityRouterConfig) -> None:
        if name in self.models:
            raise ValueError(f"routers.{name}: a model group has the same name")
        targets = {"simple": router.simple, "complex": router.complex}
        if router.embedding_model is not None:
            targets["embedding_model"] = router.embedding_model
        for field, target in targets.items():
            if target not in self.models:
                raise ValueError(
                    f"routers.{name}.{field}: no model group named {target!r}"
                )
        examples = router.examples
        if router.embedding_model and not (examples.simple and examples.complex):
            raise ValueError(
                f"routers.{name}.examples: the embedding classifier needs at"
                " least one simple and one complex example"
            )

    def database_url(self) -> str:
        """Return the configured database URL or the SQLite file in KEELWAY_HOME."""
        if self.database.url:
            return self.database.url
        return f"sqlite:///{keelway_home() / 'keelway.db'}"


def _expand(value: Any, path: str) -> Any:
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(
                    f"{path}: environment variable {name} is not set"
                    f" (referenced as ${{{name}}})"
                )
            return os.environ[name]

        return _ENV_REFERENCE.sub(substitute, value)
    if isinstance(value, dict):
        return {
            k: _expand(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        given = item.get("input")
        shown = "" if isinstance(given, dict | list) else f", got {given!r}"
        # A URL's user and password (a Redis or database URL) stay hidden.
        shown = hide_userinfo(shown)
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        if not item["loc"] and item["type"] == "value_error":
            # Whole-config checks put the field path in the message itself.
            lines.append(message.removeprefix("Value error, "))
            continue
        lines.append(f"{_field_path(item['loc'])}: {message}{shown}")
    return "; ".join(lines)


def parse_config(data: Any, source: str = "config") -> Config:
    """Validate a loaded YAML document into a :class:`Config`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return Config.model_validate(_expand(data, ""))
    except ValidationError as error:
        raise ConfigError(f"{source}: {_describe(error)}") from None


def load_config(path: Path | None) -> Config:
    """Read and validate the config file; no path means the built-in default."""
    if path is None:
        return parse_config(yaml.safe_load(default_config_text()), "default config")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from None
    return parse_config(data, str(path))


def default_config_text() -> str:
    """Return the commented default config that ``keelway init`` writes."""
    return (Path(__file__).parent / "default_config.yaml").read_text(encoding="utf-8")
