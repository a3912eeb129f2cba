"""What a request that failed gets: an error page (or a protocol error in JSON on the protocol endpoints), a 503
with ``Retry-After`` when a backing service is unreachable, and never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask_babel import gettext
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from ..extensions import db
from ..keys import KeyManagementError
from ..store.kv import StoreUnavailable

log = logging.getLogger(__name__)

#: Paths answered in JSON (protocol endpoints), whatever the error.
JSON_PATH_PREFIXES = ("/token", "/par", "/userinfo", "/jwks.json", "/.well-known/")


def unavailable_service(error: BaseException) -> str | None:
    """Which backing service an exception says is unreachable: "store", "database", "keys" or None."""
    import redis
    from limits.errors import StorageError
    from sqlalchemy import exc as sa

    if isinstance(error, StoreUnavailable | redis.RedisError | StorageError):
        return "store"
    if isinstance(error, sa.OperationalError | sa.InterfaceError | sa.TimeoutError):
        return "database"
    if isinstance(error, sa.DBAPIError) and error.connection_invalidated:
        return "database"
    if isinstance(error, KeyManagementError):
        return "keys"
    return None


def wants_json() -> bool:
    return request.path.startswith(JSON_PATH_PREFIXES)


def install(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_failed(error: CSRFError) -> tuple[str, int]:
        message = gettext("This form has expired or was sent from another page. Go back, reload and try again.")
        return render_template("error.html", message=message), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        status = error.code or 500
        original = getattr(error, "original_exception", None)
        if status == 500 and original is not None and unavailable_service(original):
            # Raised outside the view (opening or saving the browser session): still a 503, not a 500.
            return unavailable(original)
        if status == 429:
            from ..ops.metrics import RATE_LIMITED, endpoint_label

            RATE_LIMITED.labels(limit=endpoint_label()).inc()
        extra_headers = {}
        if status == 429:
            # A refusal says how long to wait: the length of the limit's window (idp.rate_limits.RateLimited).
            extra_headers["Retry-After"] = str(getattr(error, "retry_after", 60))
        if wants_json():
            body = {"error": "temporarily_unavailable" if status == 429 else "invalid_request"}
            body["error_description"] = (error.description or "")[:200]
            response = jsonify(body)
            response.status_code = status
            response.headers.update(extra_headers)
            return response
        messages = {
            404: gettext("This page does not exist."),
            405: gettext("This address does not accept that kind of request."),
            413: gettext("The request is too large."),
            429: gettext("Too many attempts. Wait a minute and try again."),
            500: gettext("Something went wrong on our side. Please try again."),
        }
        message = messages.get(status, gettext("The request could not be understood."))
        return render_template("error.html", message=message), status, extra_headers

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Any:
        if unavailable_service(error):
            return unavailable(error)
        log.exception("unhandled error")
        from werkzeug.exceptions import InternalServerError

        return http_error(InternalServerError())

    def unavailable(error: Exception) -> Any:
        from ..ops.metrics import UNAVAILABLE

        service = unavailable_service(error) or "keys"
        UNAVAILABLE.labels(service=service).inc()
        log.error("service unavailable (%s): %s", service, error.__class__.__name__)
        try:
            db.session.rollback()  # nothing half-written: the request's transaction is dropped
        except Exception:  # the connection is gone; the pool replaces it on the next checkout
            log.debug("rollback failed", exc_info=True)
        retry_after = str(app.extensions["idp"].config.observability.retry_after)
        if wants_json():
            response = jsonify(
                {
                    "error": "temporarily_unavailable",
                    "error_description": "The service is unavailable; try again.",
                }
            )
            response.status_code = 503
            response.headers["Retry-After"] = retry_after
            response.headers["Cache-Control"] = "no-store"
            return response
        message = gettext("The service is unavailable at the moment. Please try again in a few minutes.")
        page = render_template("error.html", message=message, retry=True)
        return page, 503, {"Retry-After": retry_after, "Cache-Control": "no-store"}
