"""A circuit breaker per deployment.

Closed: requests flow, and failures are counted in a sliding window. After
``failures`` failures within ``window_seconds`` the circuit opens and the
deployment gets no requests. After ``cooldown_seconds`` it half-opens: one
request is let through as a probe. A successful probe closes the circuit; a
failed one opens it for another cool-down.

The state lives in the process, so each replica judges a deployment from
its own traffic.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable

from keelway.config import BreakerConfig


class BreakerState(enum.IntEnum):
    """Circuit states, numbered as ``/metrics`` reports them."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Failure counting and the open, half-open and closed states of one deployment."""

    def __init__(
        self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.clock = clock
        self._failures: deque[float] = deque()
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        """The state now, with an expired cool-down read as half-open."""
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self._opened_at >= self.config.cooldown_seconds:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allows(self) -> bool:
        """Return whether a request may go to the deployment now."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        return state is BreakerState.HALF_OPEN and not self._probing

    def begin(self) -> None:
        """Mark that a request is going out, which takes the half-open probe."""
        if self.state is BreakerState.HALF_OPEN:
            self._probing = True

    def succeed(self) -> None:
        """Record a success: a successful probe closes the circuit."""
        if self._opened_at is not None and self.state is BreakerState.HALF_OPEN:
            self._opened_at = None
            self._failures.clear()
        self._probing = False

    def fail(self) -> None:
        """Record a failure that counts against the deployment's health."""
        now = self.clock()
        self._probing = False
        if self._opened_at is not None:
            # A failed probe, or a request that was in flight when the
            # circuit opened: start a new cool-down.
            self._opened_at = now
            return
        self._failures.append(now)
        horizon = now - self.config.window_seconds
        while self._failures and self._failures[0] < horizon:
            self._failures.popleft()
        if len(self._failures) >= self.config.failures:
            self._opened_at = now
            self._failures.clear()

    def release(self) -> None:
        """Give back a probe whose request ended without a verdict."""
        self._probing = False
