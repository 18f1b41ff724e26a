"""The ASGI application and its lifespan."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from keelway import __version__
from keelway.cache import build_exact_cache, build_semantic_cache
from keelway.config import Config, ConfigError
from keelway.evals.base import Services
from keelway.evals.client import self_client
from keelway.experiments.store import ExperimentStore
from keelway.gateway import (
    admin_routes,
    anthropic_routes,
    feedback,
    health,
    openai_routes,
)
from keelway.gateway.auth import Authenticator
from keelway.gateway.caching import ResponseCache
from keelway.gateway.errors import GatewayError, MethodNotAllowed, RouteNotFound
from keelway.gateway.limiting import RequestLimits
from keelway.gateway.pipeline import Pipeline
from keelway.gateway.prompting import PromptStep
from keelway.gateway.responses import error_response
from keelway.gateway.shadow import ShadowRunner
from keelway.governance import AuditLog
from keelway.guardrails.engine import GuardEngine
from keelway.limits import build_limiters
from keelway.monitoring.metrics import Metrics
from keelway.monitoring.online import OnlineEvaluator
from keelway.prompts.registry import PromptRegistry
from keelway.prompts.render import Renderer
from keelway.prompts.resolver import PromptResolver
from keelway.routing import Router
from keelway.routing.complexity import complexity_routers, group_embedder
from keelway.store.database import Database
from keelway.store.keys import KeyStore
from keelway.tracing.pricing import PriceTable
from keelway.tracing.usage import Usage
from keelway.tracing.writer import TraceWriter

log = logging.getLogger(__name__)

# Seconds shutdown waits for running shadow calls before cancelling them.
SHADOW_DRAIN_SECONDS = 10.0
# Seconds shutdown waits for queued online evaluations.
ONLINE_DRAIN_SECONDS = 10.0


def response_cache(
    config: Config, router: Router, database: Database
) -> ResponseCache | None:
    """Build the exact and semantic caches that some model group uses."""
    cache = config.cache
    groups = list(config.models)
    exact = None
    if any(cache.exact_enabled(group) for group in groups):
        exact = build_exact_cache(cache, database=database)
    semantic = None
    if any(cache.semantic_enabled(group) for group in groups):
        embed = group_embedder(router, cache.semantic.embedding_model)
        semantic = build_semantic_cache(cache, embed)
    if exact is None and semantic is None:
        return None
    return ResponseCache(cache, exact, semantic)


def create_app(config: Config, database: Database) -> FastAPI:
    """Build the gateway app over a migrated store."""
    metrics = Metrics()
    tracing = config.tracing
    writer = TraceWriter(
        database,
        metrics,
        queue_size=tracing.queue_size,
        batch_size=tracing.batch_size,
        flush_interval=tracing.flush_interval_ms / 1000,
        when_full=tracing.when_full,
    )
    prices = PriceTable.load(config.pricing.overrides)
    typical = Usage(input_tokens=1000, output_tokens=250)
    router = Router.from_config(
        config, unit_price=lambda d: prices.cost(d.model, typical, d.price)
    )
    rate, budgets = build_limiters(config.limits, database)
    audit = AuditLog(database)
    registry = PromptRegistry.from_config(database, audit, config.prompts)
    experiments = ExperimentStore(database, audit)
    renderer = Renderer()
    resolver = PromptResolver(registry, experiments, config.prompts.check_interval)
    step = PromptStep(resolver, renderer)
    pipeline = Pipeline(
        config,
        router,
        Authenticator(KeyStore(database), config.auth.key_cache_seconds),
        prices,
        metrics,
        writer,
        complexity_routers(config, router),
        response_cache(config, router, database),
        RequestLimits(config.limits, rate, budgets, router, prices, metrics),
        step,
        guard_engine(config, metrics),
    )
    shadows = ShadowRunner(
        pipeline,
        step,
        experiments,
        config.prompts.max_shadow_calls,
        config.prompts.shadow_delay_ms / 1000,
    )
    pipeline.shadows = shadows
    online = None
    if config.evals.online.enabled and config.evals.online.evaluators:
        online = OnlineEvaluator(config.evals.online, database, metrics)
        writer.listeners.append(online.offer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await writer.start()
        await router.start()
        log.info("gateway started with %d models", len(router.groups))
        try:
            async with contextlib.AsyncExitStack() as stack:
                if online is not None:
                    # Judge and embedding calls go through this same app.
                    client = await stack.enter_async_context(
                        self_client(app, config.evals.embedding_model)
                    )
                    online.start(Services(embed=client.embed, judge=client.judge))
                    stack.push_async_callback(online.stop, ONLINE_DRAIN_SECONDS)
                yield
        finally:
            await shadows.drain(SHADOW_DRAIN_SECONDS)
            await writer.stop()
            resolver.close()
            await router.close()
            if pipeline.cache is not None:
                await pipeline.cache.close()
            if pipeline.limits is not None:
                await pipeline.limits.close()
            log.info("gateway stopped")

    app = FastAPI(
        title="keelway",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    # A path with a trailing slash gets a JSON 404 rather than a redirect
    # built from the client's Host header.
    app.router.redirect_slashes = False
    app.state.pipeline = pipeline
    app.state.admin = admin_routes.build_admin(database, registry, experiments)
    app.state.database = database
    app.state.started_at = time.time()
    _add_routes(app)
    _add_error_handlers(app)
    return app


def _add_routes(app: FastAPI) -> None:
    # Plain Starlette routes: the handlers read the request themselves, and
    # FastAPI's dependency and validation layer only added cost per request.
    for prefix in ("/v1", ""):
        app.add_route(
            f"{prefix}/chat/completions",
            openai_routes.chat_completions,
            methods=["POST"],
        )
        app.add_route(f"{prefix}/embeddings", openai_routes.embeddings, ["POST"])
        app.add_route(f"{prefix}/models", openai_routes.list_models, ["GET"])
    app.add_route("/v1/messages", anthropic_routes.messages, ["POST"])
    app.add_route("/v1/feedback", feedback.submit, ["POST"])
    for path, handler, methods in admin_routes.ROUTES:
        app.add_route(path, handler, methods)
    app.add_route("/healthz", health.healthz, ["GET"])
    app.add_route("/readyz", health.readyz, ["GET"])
    app.add_route("/metrics", health.metrics, ["GET"])


def _error_style(request: Request) -> str:
    """Return the error body style of the route: Anthropic's on its route."""
    return "anthropic" if request.url.path.startswith("/v1/messages") else "openai"


def _add_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, error: Exception) -> Response:
        status = error.status_code if isinstance(error, HTTPException) else 500
        style = _error_style(request)
        if status == 404:
            return error_response(
                RouteNotFound(f"no route {request.url.path!r}"), style
            )
        if status == 405:
            allowed = error.headers if isinstance(error, HTTPException) else None
            return error_response(
                MethodNotAllowed(
                    f"{request.method} is not allowed on {request.url.path!r}",
                    headers=dict(allowed or {}),
                ),
                style,
            )
        detail = error.detail if isinstance(error, HTTPException) else "request failed"
        return error_response(GatewayError(str(detail), status=status), style)

    async def unexpected(request: Request, error: Exception) -> Response:
        log.error(
            "unhandled error on %s %s: %s",
            request.method,
            request.url.path,
            error.__class__.__name__,
            exc_info=error,
        )
        return error_response(
            GatewayError("internal error in keelway; the log has the details"),
            _error_style(request),
        )

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def guard_engine(config: Config, metrics: Metrics) -> GuardEngine:
    """Build every guardrail policy, so bad scanner settings stop the start."""
    try:
        return GuardEngine(config.guardrails, metrics)
    except ValueError as error:
        raise ConfigError(f"guardrails.{error}") from None
