"""Prometheus metrics for the API: request counts and latency by route template, jobs submitted.

Each app gets its own registry, so several apps in one process (tests) never collide, and the
route label is the template (``/v1/jobs/{job_id}``), never the raw path, so cardinality stays
bounded.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as _generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "spectra_http_requests_total",
            "HTTP requests handled, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "spectra_http_request_duration_seconds",
            "Time to handle an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.jobs_submitted = Counter(
            "spectra_jobs_submitted_total",
            "Jobs newly created through the API (idempotent repeats not counted), by model and method.",
            ["model", "method"],
            registry=self.registry,
        )

    def exposition(self) -> tuple[bytes, str]:
        return _generate_latest(self.registry), CONTENT_TYPE_LATEST


def route_template(scope: Scope) -> str:
    """``/v1/jobs/{job_id}`` for ``/v1/jobs/3f2c...``: the request path with each segment that
    is a path parameter's value put back as ``{name}``; "unmatched" when no route matched."""
    if scope.get("route") is None:
        return "unmatched"
    names_by_value = {str(v): k for k, v in (scope.get("path_params") or {}).items()}
    if not names_by_value:
        return str(scope.get("path", "unmatched"))
    segments = scope.get("path", "").split("/")
    return "/".join(f"{{{names_by_value[s]}}}" if s in names_by_value else s for s in segments)


class MetricsMiddleware:
    """Pure ASGI middleware (no body buffering) timing every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            template = route_template(scope)
            method = scope.get("method", "GET")
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
            self.metrics.requests.labels(method, template, str(status)).inc()
