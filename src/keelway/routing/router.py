"""Model groups: a public model name served by one or more deployments."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from keelway.config import Config, ConfigError, DeploymentConfig
from keelway.providers.registry import ProviderNotFound, load_provider_class

log = logging.getLogger(__name__)


class ModelNotFound(Exception):
    """No model group has this name."""


@dataclass(slots=True)
class Deployment:
    """A configured deployment and its live provider adapter."""

    name: str
    group: str
    config: DeploymentConfig
    provider: Any

    @property
    def serves_chat(self) -> bool:
        return hasattr(self.provider, "chat")

    @property
    def serves_embeddings(self) -> bool:
        return hasattr(self.provider, "embed")


def deployment_name(group: str, index: int, config: DeploymentConfig) -> str:
    """Return the configured name, or one made of the group and the position."""
    return config.name or f"{group}/{index}"


class Router:
    """Holds every model group and picks the deployment that serves a request.

    NOTE: each group is served by its first deployment; load balancing,
    fallbacks and circuit breakers across a group's deployments are not built.
    """

    def __init__(self, groups: dict[str, list[Deployment]]) -> None:
        self.groups = groups

    @classmethod
    def from_config(cls, config: Config) -> Router:
        """Instantiate an adapter for every deployment in the config."""
        groups: dict[str, list[Deployment]] = {}
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
                    )
                )
        return cls(groups)

    def pick(self, model: str) -> Deployment:
        """Return the deployment that serves ``model``."""
        deployments = self.groups.get(model)
        if not deployments:
            raise ModelNotFound(model)
        return deployments[0]

    def deployments(self) -> list[Deployment]:
        """Return every deployment of every group."""
        return [d for group in self.groups.values() for d in group]

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
