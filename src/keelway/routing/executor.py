"""Running one request against a model group: retries, fallbacks, breakers.

The order of attempts for a request to group G:

1. a deployment of G chosen by G's strategy among those whose circuit is
   not open, preferring one that has not failed this request yet;
2. after an error whose policy action is ``retry``: a backoff, then another
   attempt in G, up to ``routing.retries.max_retries`` retries;
3. when G is exhausted, or at once after an error whose action is
   ``fallback``: each group of G's fallback list in order, with the same
   retries. A context-window overflow uses ``context_window_fallbacks`` and
   a content-policy refusal ``content_policy_fallbacks`` when G has them.
   Fallback groups' own fallbacks are not followed, so a chain of
   fallbacks cannot loop.

An error whose action is ``return`` ends the request at once. Streams call
this only up to their first chunk, so nothing is retried after a byte has
reached the client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from keelway.config import ModelGroup, RoutingConfig
from keelway.providers.errors import (
    DeploymentAtCapacity,
    ProviderError,
    UpstreamStatusError,
)
from keelway.routing.policy import (
    BREAKER_CLASSES,
    ErrorClass,
    action_for,
    backoff_delay,
    classify,
)
from keelway.routing.router import Deployment, Router

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of a request: which deployment, in which group, which number."""

    number: int
    group: str
    deployment: Deployment
    retry: int


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """The result of the attempt that succeeded."""

    value: T
    attempt: Attempt


class RoutingFailed(Exception):
    """Every permitted attempt failed; carries the last provider error."""

    def __init__(
        self, error: ProviderError, attempt: Attempt, error_class: ErrorClass
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempt = attempt
        self.error_class = error_class


class NoDeploymentAvailable(Exception):
    """Every deployment of the group and its fallbacks has an open circuit."""

    def __init__(self, groups: list[str]) -> None:
        names = ", ".join(repr(g) for g in groups)
        super().__init__(
            f"every deployment of {names} is cooling down after repeated"
            " failures; retry later"
        )
        self.groups = groups


Sleep = Callable[[float], Awaitable[None]]


class Executor:
    """Runs attempts of one request under the routing config."""

    def __init__(
        self, router: Router, config: RoutingConfig, sleep: Sleep = asyncio.sleep
    ) -> None:
        self.router = router
        self.config = config
        self.sleep = sleep

    async def run(
        self,
        group: str,
        attempt: Callable[[Attempt], Awaitable[T]],
        *,
        sticky: str | None = None,
    ) -> Outcome[T]:
        """Run ``attempt`` until one succeeds, following the routing rules."""
        queue = [group]
        tried: list[str] = []
        last: RoutingFailed | None = None
        number = 0
        while queue:
            name = queue.pop(0)
            tried.append(name)
            outcome, failure, next_groups = await self._run_group(
                name, attempt, sticky, number
            )
            if outcome is not None:
                return outcome
            if failure is not None:
                last = failure
                number = failure.attempt.number
            if name == group:
                queue = [g for g in next_groups if g not in tried]
        if last is not None:
            raise last
        raise NoDeploymentAvailable(tried)

    async def _run_group(
        self,
        group: str,
        attempt: Callable[[Attempt], Awaitable[T]],
        sticky: str | None,
        number: int,
    ) -> tuple[Outcome[T] | None, RoutingFailed | None, list[str]]:
        spec = self.router.specs[group]
        failed: set[str] = set()
        last: RoutingFailed | None = None
        retry = 0
        while True:
            deployment = self.router.pick(group, sticky=sticky, avoid=failed)
            if deployment is None:
                return None, last, list(spec.fallbacks)
            number += 1
            current = Attempt(number, group, deployment, retry)
            deployment.breaker.begin()
            deployment.stats.in_flight += 1
            try:
                value = await attempt(current)
            except ProviderError as error:
                deployment.stats.in_flight -= 1
                error_class = classify(error)
                self._judge(deployment, error, error_class)
                last = RoutingFailed(error, current, error_class)
                action = action_for(self.config.policy, error_class)
                log.info(
                    "attempt %d on deployment %s failed (%s), action %s",
                    number,
                    deployment.name,
                    error_class.value,
                    action,
                )
                if action == "return":
                    raise last from None
                if action == "fallback":
                    return None, last, _fallbacks_for(spec, error_class)
                failed.add(deployment.name)
                retry += 1
                if retry > self.config.retries.max_retries:
                    return None, last, list(spec.fallbacks)
                delay = self._delay(group, failed, retry, error)
                if delay is None:
                    return None, last, list(spec.fallbacks)
                if delay > 0:
                    await self.sleep(delay)
                continue
            except BaseException:
                deployment.stats.in_flight -= 1
                deployment.breaker.release()
                raise
            deployment.breaker.succeed()
            return Outcome(value, current), None, []

    def _judge(
        self, deployment: Deployment, error: ProviderError, error_class: ErrorClass
    ) -> None:
        # A deployment at its own configured limit is healthy, just busy.
        if error_class in BREAKER_CLASSES and not isinstance(
            error, DeploymentAtCapacity
        ):
            deployment.breaker.fail()
        else:
            deployment.breaker.release()

    def _delay(
        self, group: str, failed: set[str], retry: int, error: ProviderError
    ) -> float | None:
        retry_after = (
            error.retry_after
            if isinstance(error, UpstreamStatusError | DeploymentAtCapacity)
            else None
        )
        if self.router.has_untried(group, failed):
            # Another deployment can take the retry now; the Retry-After of
            # the one that failed does not apply to it.
            retry_after = None
        return backoff_delay(self.config.retries, retry, retry_after)


def _fallbacks_for(spec: ModelGroup, error_class: ErrorClass) -> list[str]:
    if error_class is ErrorClass.CONTEXT_WINDOW_EXCEEDED:
        return list(spec.context_window_fallbacks or spec.fallbacks)
    if error_class is ErrorClass.CONTENT_POLICY:
        return list(spec.content_policy_fallbacks or spec.fallbacks)
    return list(spec.fallbacks)
