"""Reading traces from a test server's store, waiting for the batch writer."""

from __future__ import annotations

import time
from typing import Any

from keelway.store.traces import TraceStore
from tests.servers import KeelwayServer


def wait_for_trace(
    server: KeelwayServer, request_id: str, timeout: float = 10
) -> dict[str, Any]:
    """Return the trace of ``request_id`` once the writer has stored it."""
    store = TraceStore(server.database)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trace = store.get(request_id)
        if trace is not None:
            return trace
        time.sleep(0.05)
    raise AssertionError(f"no trace for request {request_id} within {timeout}s")
