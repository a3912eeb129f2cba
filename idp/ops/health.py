"""``/healthz`` (the process answers) and ``/readyz`` (it can serve: database, key-value store, signing keys)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from ..extensions import db
from ..keys import KeyManagementError
from ..provider import current_provider

bp = Blueprint("ops_health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return _no_store(jsonify({"status": "ok"}))


@bp.get("/readyz")
def readyz() -> Response:
    provider = current_provider()
    checks: dict[str, Any] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # any driver error means "not ready", never a 500
        db.session.rollback()
        checks["database"] = f"unreachable ({error.__class__.__name__})"
    checks["store"] = "ok" if provider.store.ping() else "unreachable"
    try:
        for alg in {provider.config.keys.id_token_alg, provider.config.keys.access_token_alg}:
            provider.keys.signing_key(alg)
        checks["keys"] = "ok"
    except KeyManagementError as error:
        checks["keys"] = str(error)
    except Exception as error:  # the key metadata lives in the database
        db.session.rollback()
        checks["keys"] = f"not loaded ({error.__class__.__name__})"
    ready = all(value == "ok" for value in checks.values())
    response = jsonify({"status": "ready" if ready else "unavailable", "checks": checks})
    if not ready:
        response.status_code = 503
        response.headers["Retry-After"] = str(provider.config.observability.retry_after)
    return _no_store(response)


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response
