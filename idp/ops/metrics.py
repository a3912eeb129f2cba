"""Prometheus metrics at ``/metrics``, for the addresses in ``observability.metrics_allowed`` only.

Under ``idp serve`` each gunicorn worker writes its figures to files in ``PROMETHEUS_MULTIPROC_DIR`` and a
scrape adds them up, so one scrape of any worker sees the whole server (prometheus_client's multiprocess mode).
Label values come from small fixed sets (URL rules, grant types, login methods), never from user input.
"""

from __future__ import annotations

import ipaddress
import os
import time
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

from ..config import parse_networks

bp = Blueprint("ops_metrics", __name__)

REQUESTS = Counter("hoviyat_http_requests", "HTTP requests answered", ["endpoint", "method", "status"])
LATENCY = Histogram(
    "hoviyat_http_request_duration_seconds",
    "Time to answer a request",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LOGINS = Counter("hoviyat_logins", "Login attempts by method and result", ["method", "result"])
CODES_SENT = Counter("hoviyat_codes_sent", "One-time codes sent", ["channel", "purpose"])
CODE_CHECKS = Counter("hoviyat_code_checks", "One-time codes checked", ["purpose", "result"])
TOKENS_ISSUED = Counter("hoviyat_tokens_issued", "Token responses by grant type", ["grant_type"])
RATE_LIMITED = Counter("hoviyat_rate_limit_hits", "Requests refused or slowed by a limit", ["limit"])
UNAVAILABLE = Counter("hoviyat_unavailable", "Requests answered 503 because a backing service failed", ["service"])

# Audit events that are also counted; see idp.store.audit.record.
LOGIN_EVENTS = {"login.succeeded": "success", "login.failed": "failure", "login.step_up": "step_up"}


def count_audit_event(event: str, detail: dict) -> None:
    result = LOGIN_EVENTS.get(event)
    if result is not None:
        LOGINS.labels(method=str(detail.get("method", "unknown"))[:16], result=result).inc()
    elif event == "token.issued":
        TOKENS_ISSUED.labels(grant_type=str(detail.get("grant_type") or "unknown")[:32]).inc()


def endpoint_label() -> str:
    """The current request's URL rule (a small fixed set, never the raw path), or "unmatched"."""
    return request.url_rule.rule if request.url_rule is not None else "unmatched"


def install(app: Flask) -> None:
    settings = app.extensions["idp"].config.observability
    app.extensions["idp.metrics_allowed"] = parse_networks("observability.metrics_allowed", settings.metrics_allowed)

    @app.before_request
    def start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def count_request(response: Response) -> Response:
        started = g.get("request_started")
        endpoint = endpoint_label()
        _request_counter(endpoint, request.method, response.status_code).inc()
        if started is not None:
            _latency_histogram(endpoint).observe(time.perf_counter() - started)
        return response


# The labelled children of the per-request metrics, kept: ``labels()`` checks and joins its label values and takes
# a lock each time, twice a request. Bounded, since the method is the client's.
_REQUEST_COUNTERS: dict[tuple[str, str, int], Any] = {}
_LATENCY_HISTOGRAMS: dict[str, Any] = {}
_CHILDREN_KEPT = 2000


def _request_counter(endpoint: str, method: str, status: int) -> Any:
    key = (endpoint, method, status)
    child = _REQUEST_COUNTERS.get(key)
    if child is None:
        child = REQUESTS.labels(endpoint=endpoint, method=method, status=str(status))
        if len(_REQUEST_COUNTERS) < _CHILDREN_KEPT:
            _REQUEST_COUNTERS[key] = child
    return child


def _latency_histogram(endpoint: str) -> Any:
    child = _LATENCY_HISTOGRAMS.get(endpoint)
    if child is None:
        child = LATENCY.labels(endpoint=endpoint)
        if len(_LATENCY_HISTOGRAMS) < _CHILDREN_KEPT:
            _LATENCY_HISTOGRAMS[endpoint] = child
    return child


@bp.get("/metrics")
def metrics() -> Response:
    allowed = current_app.extensions["idp.metrics_allowed"]
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        abort(404)
    if not any(address in network for network in allowed):
        abort(404)  # not 403: do not tell strangers there is something here
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest()
    response = Response(body, mimetype=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response
