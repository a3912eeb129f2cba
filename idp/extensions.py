"""Flask extensions, created once here and bound to the app in :func:`idp.create_app`."""

from flask import current_app, request
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
    """Flask-Limiter, minus its per-request evaluation on the endpoints that limit themselves.

    A request filter is asked only after Flask-Limiter has looked up the view and resolved its limits, and the
    evaluation runs even for an empty list: ~40 us a request on the endpoints relying parties call most."""

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        if in_middleware and request.endpoint in SELF_LIMITED_ENDPOINTS:
            return
        super()._check_request_limit(callable_name, in_middleware)


limiter = _Limiter(key_func=_client_key, default_limits=[])
