"""Model groups, load balancing, retries, fallbacks and circuit breakers."""

from keelway.routing.breaker import BreakerState, CircuitBreaker
from keelway.routing.executor import (
    Attempt,
    Executor,
    NoDeploymentAvailable,
    Outcome,
    RoutingFailed,
)
from keelway.routing.policy import ErrorClass, classify
from keelway.routing.router import Deployment, ModelNotFound, Router

__all__ = [
    "Attempt",
    "BreakerState",
    "CircuitBreaker",
    "Deployment",
    "ErrorClass",
    "Executor",
    "ModelNotFound",
    "NoDeploymentAvailable",
    "Outcome",
    "Router",
    "RoutingFailed",
    "classify",
]
