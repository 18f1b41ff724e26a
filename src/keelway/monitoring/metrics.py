"""Prometheus metrics of the gateway, in a registry owned by one app."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from keelway.tracing.usage import Usage

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip


class Metrics:
    """Counters and histograms exposed at ``/metrics``."""

    def __init__(self) -> None:
        # The *_created series double the output and no dashboard reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        labels = ("route", "model", "deployment")
        self.requests = Counter(
            "keelway_requests",
            "Requests answered, by route, model, deployment and HTTP status.",
            (*labels, "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "keelway_request_latency_seconds",
            "Time from request to the last byte of the answer.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "keelway_time_to_first_token_seconds",
            "Time from request to the first streamed content chunk.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "keelway_tokens",
            "Tokens by kind: input (uncached), cache_read, cache_write, output,"
            " reasoning (a part of output).",
            ("model", "deployment", "kind"),
            registry=self.registry,
        )
        self.online_eval_results = Counter(
            "keelway_online_eval_results",
            "Online evaluation verdicts on sampled traces, by evaluator and "
            "outcome (pass, fail, error).",
            ("evaluator", "outcome"),
            registry=self.registry,
        )
        self.online_eval_failure_ratio = Gauge(
            "keelway_online_eval_failure_ratio",
            "Share of failed checks among the evaluator's latest scored traces;"
            " for faithfulness this is the hallucination rate.",
            ("evaluator",),
            registry=self.registry,
        )
        self.online_eval_dropped = Counter(
            "keelway_online_eval_dropped",
            "Sampled traces not evaluated because the online evaluation queue "
            "was full.",
            registry=self.registry,
        )
        self.cost = Counter(
            "keelway_cost_usd",
            "Cost in USD of priced requests.",
            ("model", "deployment"),
            registry=self.registry,
        )
        self.unpriced = Counter(
            "keelway_unpriced_requests",
            "Requests whose model has no price, so their cost is unknown.",
            ("model", "deployment"),
            registry=self.registry,
        )
        self.errors = Counter(
            "keelway_errors",
            "Failed requests by error type.",
            (*labels, "type"),
            registry=self.registry,
        )
        self.trace_queue = Gauge(
            "keelway_trace_queue_depth",
            "Traces waiting for the batch writer.",
            registry=self.registry,
        )
        self.traces_written = Counter(
            "keelway_traces_written",
            "Traces stored by the batch writer.",
            registry=self.registry,
        )
        self.traces_dropped = Counter(
            "keelway_traces_dropped",
            "Traces dropped because the queue was full and tracing.when_full is drop.",
            registry=self.registry,
        )
        self.trace_write_errors = Counter(
            "keelway_trace_write_errors",
            "Failed attempts to write a batch of traces (the batch is retried).",
            registry=self.registry,
        )
        self.budget_soft_crossed = Counter(
            "keelway_budget_soft_limit_crossed",
            "Budgets whose soft limit a request crossed, by period.",
            ("period",),
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "keelway_cache_hits",
            "Requests answered from the cache, by model group and kind of hit.",
            ("model", "kind"),
            registry=self.registry,
        )
        self.cache_saved = Counter(
            "keelway_cache_saved_usd",
            "Provider cost that cache hits saved, in USD.",
            ("model",),
            registry=self.registry,
        )
        self.prompt_requests = Counter(
            "keelway_prompt_requests",
            "Requests rendered from a registry prompt, by prompt, version and variant.",
            ("prompt", "version", "variant"),
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            "keelway_shadow_dropped",
            "Shadow calls not started because too many were running.",
            ("experiment",),
            registry=self.registry,
        )
        self.guard_verdicts = Counter(
            "keelway_guardrail_verdicts",
            "Guardrail verdicts by policy, stage, scanner, action and outcome"
            " (pass, triggered, error).",
            ("policy", "stage", "scanner", "action", "outcome"),
            registry=self.registry,
        )
        self.guard_seconds = Histogram(
            "keelway_guardrail_seconds",
            "Time one scanner took on one request or streamed window.",
            ("stage", "scanner"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.guard_windows_skipped = Counter(
            "keelway_guardrail_windows_skipped",
            "Windows of long texts a scanner did not look at (its length cap).",
            ("scanner",),
            registry=self.registry,
        )
        self.circuit = Gauge(
            "keelway_circuit_state",
            "Circuit breaker of each deployment: 0 closed, 1 half-open, 2 open.",
            ("model", "deployment"),
            registry=self.registry,
        )
        self.deployment_up = Gauge(
            "keelway_deployment_ready",
            "1 when the deployment's last readiness check passed, else 0.",
            ("model", "deployment"),
            registry=self.registry,
        )

    def record_usage(
        self, model: str, deployment: str, usage: Usage, cost: float | None
    ) -> None:
        """Count one call's tokens and cost."""
        counts = {
            "input": usage.input_tokens,
            "cache_read": usage.cache_read_tokens,
            "cache_write": usage.cache_write_tokens,
            "output": usage.output_tokens,
            "reasoning": usage.reasoning_tokens,
        }
        for kind, count in counts.items():
            if count:
                self.tokens.labels(model, deployment, kind).inc(count)
        if cost is None:
            self.unpriced.labels(model, deployment).inc()
        elif cost:
            self.cost.labels(model, deployment).inc(cost)

    def render(self) -> bytes:
        """Return the registry in Prometheus text format."""
        return generate_latest(self.registry)
