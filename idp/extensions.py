"""Flask extensions, created once here and bound to the app in :func:`idp.create_app`."""

from collections.abc import Callable
from functools import partial, wraps
from typing import Any

from flask import Flask, current_app, request
from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData

# Named constraints keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION))
migrate = Migrate()
csrf = CSRFProtect()
babel = Babel()


#: Protocol endpoints, which apply their own limits (the token endpoint: idp.ops.address_limits) or have
#: none, so Flask-Limiter's per-request evaluation is skipped for them.
SELF_LIMITED_ENDPOINTS = frozenset(
    {"oidc.token", "oidc.introspect", "oidc.revoke", "oidc.userinfo", "oidc.public_document"}
)


def _client_key() -> str:
    # The deployment's key prefix goes into the key itself, so several deployments (or test runs) sharing one
    # Redis never share counters.
    return current_app.extensions["idp"].config.redis.key_prefix + (get_remote_address() or "-")


class _Limiter(Limiter):
    """Flask-Limiter, minus its per-request work on the endpoints that limit themselves.

    A request filter is asked only after Flask-Limiter has looked up the view and resolved its limits, and the
    evaluation runs even for an empty list: ~40 us a request on the endpoints relying parties call most. After the
    request it makes a context of its own to look for deductions and rate-limit headers, and empties it at
    teardown: ~15 us more (an introspection costs ~0.25 ms of the app's CPU). None of that has anything to do on
    an endpoint with no Flask-Limiter limit."""

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        if in_middleware and request.endpoint in SELF_LIMITED_ENDPOINTS:
            return
        super()._check_request_limit(callable_name, in_middleware)

    def init_app(self, app: Flask) -> None:
        super().init_app(app)
        # Flask-Limiter's after-request and teardown hooks are private methods it registers itself (as
        # partial(Limiter.__inject_headers, self) and self.__release_context): each is wrapped where it was registered.
        for hooks, name in (
            (app.after_request_funcs.get(None, []), "_Limiter__inject_headers"),
            (app.teardown_request_funcs.get(None, []), "_Limiter__release_context"),
        ):
            method = getattr(Limiter, name, None)
            for index, hook in enumerate(hooks):
                if method is not None and _registered_by(self, hook, method):
                    hooks[index] = _not_on_self_limited_endpoints(hook)


def _registered_by(limiter: Limiter, hook: Any, method: Callable[..., Any]) -> bool:
    """Whether ``hook`` is Flask-Limiter's ``method`` bound to ``limiter`` (as a partial or as a bound method)."""
    if isinstance(hook, partial):
        return hook.func is method and hook.args == (limiter,)
    return getattr(hook, "__func__", None) is method and getattr(hook, "__self__", None) is limiter


def _not_on_self_limited_endpoints(hook: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``hook`` (an after-request hook, given and giving the response, or a teardown hook, given the error) except on
    the endpoints that limit themselves."""

    @wraps(hook)
    def wrapped(argument: Any) -> Any:
        if request.endpoint in SELF_LIMITED_ENDPOINTS:
            return argument
        return hook(argument)

    return wrapped


limiter = _Limiter(key_func=_client_key, default_limits=[])
