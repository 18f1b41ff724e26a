"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from keelway.gateway.pipeline import Pipeline
from keelway.gateway.responses import json_response
from keelway.store.database import StoreError

CHECK_TIMEOUT = 5.0


async def healthz(request: Request) -> Response:
    """GET /healthz: the process is up."""
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """GET /readyz: the store responds and every deployment can take requests."""
    pipeline: Pipeline = request.app.state.pipeline
    store = {"ready": True, "detail": ""}
    try:
        await asyncio.wait_for(
            asyncio.to_thread(request.app.state.database.ping), CHECK_TIMEOUT
        )
    except (StoreError, TimeoutError) as error:
        store = {"ready": False, "detail": str(error) or "store check timed out"}

    # Checks run together, so one slow provider does not delay the others.
    checked = pipeline.router.deployments()
    statuses = await asyncio.gather(*(d.provider.check() for d in checked))
    deployments = {}
    for deployment, status in zip(checked, statuses, strict=True):
        pipeline.metrics.deployment_up.labels(deployment.group, deployment.name).set(
            1 if status.ready else 0
        )
        deployments[deployment.name] = {
            "model": deployment.group,
            "provider": deployment.config.provider,
            "ready": status.ready,
            "circuit": deployment.breaker.state.name.lower(),
            "detail": pipeline.scrub(status.detail),
        }
    ready = store["ready"] and all(d["ready"] for d in deployments.values())
    body = {
        "status": "ready" if ready else "not_ready",
        "store": store,
        "deployments": deployments,
    }
    return json_response(body, 200 if ready else 503)


async def metrics(request: Request) -> Response:
    """GET /metrics in Prometheus text format."""
    pipeline: Pipeline = request.app.state.pipeline
    pipeline.metrics.trace_queue.set(pipeline.writer.queue.qsize())
    for deployment in pipeline.router.deployments():
        pipeline.metrics.circuit.labels(deployment.group, deployment.name).set(
            deployment.breaker.state.value
        )
    return Response(pipeline.metrics.render(), media_type=CONTENT_TYPE_LATEST)
