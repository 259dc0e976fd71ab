"""The Grafana dashboard and Prometheus configuration in deploy/ agree with the code: every
metric a panel queries is one the API or the worker exports, and Prometheus scrapes the
services that compose defines, on the ports they serve."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import worker.metrics  # noqa: F401  (registers the worker's metrics)
from api.metrics import ApiMetrics
from worker.metrics import QUEUE_METRICS

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
COMPOSE = DEPLOY.parent / "docker-compose.yml"
PROMQL_WORDS = {
    "sum",
    "by",
    "rate",
    "max",
    "min",
    "histogram_quantile",
    "clamp_min",
    "increase",
    "le",
    "model",
    "method",
    "route",
    "status",
    "reason",
    "queue",
    "state",
}


def exported_names() -> set[str]:
    names: set[str] = set()
    for registry in (ApiMetrics().registry, REGISTRY):
        for family in registry.collect():
            names |= {sample.name for sample in family.samples} | {family.name}
    # Counters are exposed with _total; histograms with _bucket/_sum/_count.
    names |= {f"{n}_total" for n in names} | {f"{n}_bucket" for n in names}
    # Read from Redis at scrape time by the worker's exporter (tests/pipeline/test_worker_metrics.py).
    return names | QUEUE_METRICS


def test_every_panel_queries_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "latent-spectra.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    exported = exported_names()
    queried: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bspectra_[a-z_]+", target["expr"])) - PROMQL_WORDS
            assert names, target["expr"]
            unknown = names - exported
            assert not unknown, f"{panel['title']}: {unknown} is not exported"
            queried |= names
    # The four worker signals and the API's are all on the dashboard.
    for needed in (
        "spectra_worker_codes_total",
        "spectra_worker_code_failures_total",
        "spectra_worker_chunk_duration_seconds_bucket",
        "spectra_queue_depth",
        "spectra_http_requests_total",
        "spectra_http_request_duration_seconds_bucket",
    ):
        assert needed in queried, needed


def test_prometheus_scrapes_the_compose_services() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    compose = yaml.safe_load(COMPOSE.read_text())
    targets = {
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    }
    for target in targets:
        service, port = target.split(":")
        assert service in compose["services"], target
        if service.startswith("worker"):
            assert (
                compose["services"][service]["environment"]["SPECTRA_WORKER_METRICS_PORT"] == port
            )
    assert "api:8000" in targets
    grafana = compose["services"]["grafana"]
    assert any("latent-spectra.json" in volume for volume in grafana["volumes"])
