"""Model groups: a public model name served by one or more deployments."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from keelway.config import Config, ConfigError, DeploymentConfig, ModelGroup
from keelway.providers.registry import ProviderNotFound, load_provider_class
from keelway.routing.breaker import BreakerState, CircuitBreaker
from keelway.routing.strategies import DeploymentStats, choose

log = logging.getLogger(__name__)


class ModelNotFound(Exception):
    """No model group has this name."""


@dataclass(slots=True)
class Deployment:
    """A configured deployment, its live provider adapter and its health."""

    name: str
    group: str
    config: DeploymentConfig
    provider: Any
    breaker: CircuitBreaker
    stats: DeploymentStats = field(default_factory=DeploymentStats)
    # USD for a request of 1,000 input and 250 output tokens, for the
    # lowest_cost strategy; None when the price table lacks the model.
    unit_price: float | None = None

    @property
    def weight(self) -> float:
        return self.config.weight

    @property
    def serves_chat(self) -> bool:
        return hasattr(self.provider, "chat")

    @property
    def serves_embeddings(self) -> bool:
        return hasattr(self.provider, "embed")


def deployment_name(group: str, index: int, config: DeploymentConfig) -> str:
    """Return the configured name, or one made of the group and the position."""
    return config.name or f"{group}/{index}"


UnitPrice = Callable[[DeploymentConfig], float | None]


class Router:
    """Holds every model group and picks the deployment that takes a request."""

    def __init__(
        self, groups: dict[str, list[Deployment]], specs: dict[str, ModelGroup]
    ) -> None:
        self.groups = groups
        self.specs = specs

    @classmethod
    def from_config(cls, config: Config, unit_price: UnitPrice | None = None) -> Router:
        """Instantiate an adapter and a circuit breaker for every deployment."""
        groups: dict[str, list[Deployment]] = {}
        breaker = config.routing.circuit_breaker
        for group, spec in config.models.items():
            groups[group] = []
            for index, deployment in enumerate(spec.deployments):
                try:
                    adapter = load_provider_class(deployment.provider)
                except ProviderNotFound as error:
                    path = f"models.{group}.deployments[{index}].provider"
                    raise ConfigError(f"{path}: {error}") from None
                groups[group].append(
                    Deployment(
                        name=deployment_name(group, index, deployment),
                        group=group,
                        config=deployment,
                        provider=adapter(deployment),
                        breaker=CircuitBreaker(breaker),
                        unit_price=unit_price(deployment) if unit_price else None,
                    )
                )
        return cls(groups, dict(config.models))

    def first(self, model: str) -> Deployment:
        """Return the first deployment of ``model``, to check what it serves."""
        deployments = self.groups.get(model)
        if not deployments:
            raise ModelNotFound(model)
        return deployments[0]

    def pick(
        self, group: str, *, sticky: str | None = None, avoid: set[str] | None = None
    ) -> Deployment | None:
        """Return the deployment for the next attempt, or None if all are open.

        Deployments in ``avoid`` (those that failed this request) are used
        only when no other deployment of the group is available.
        """
        available = [d for d in self.groups[group] if d.breaker.allows()]
        if not available:
            return None
        fresh = [d for d in available if not avoid or d.name not in avoid]
        chosen = choose(self.specs[group].strategy, fresh or available, sticky=sticky)
        assert isinstance(chosen, Deployment)
        return chosen

    def has_untried(self, group: str, failed: set[str]) -> bool:
        """Return whether an available deployment has not failed this request."""
        return any(
            d.name not in failed and d.breaker.allows() for d in self.groups[group]
        )

    def finish(self, deployment: Deployment, latency: float | None) -> None:
        """Record the end of a successful call that :meth:`pick` started."""
        deployment.stats.in_flight -= 1
        if latency is not None:
            deployment.stats.observe_latency(latency)

    def deployments(self) -> list[Deployment]:
        """Return every deployment of every group."""
        return [d for group in self.groups.values() for d in group]

    def breaker_states(self) -> dict[str, BreakerState]:
        """Return each deployment's circuit state by deployment name."""
        return {d.name: d.breaker.state for d in self.deployments()}

    async def start(self) -> None:
        """Start every provider adapter."""
        for deployment in self.deployments():
            await deployment.provider.start()

    async def close(self) -> None:
        """Close every provider adapter."""
        for deployment in self.deployments():
            try:
                await deployment.provider.close()
            except Exception as error:  # noqa: BLE001 - shutdown must reach every adapter
                log.error("closing deployment %s failed: %r", deployment.name, error)
