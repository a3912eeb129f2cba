"""Client registrations: what each relying party may ask for, and how it authenticates."""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.orm import make_transient_to_detached

from .. import clock
from ..config import SIGNING_ALGORITHMS, is_loopback_host
from ..extensions import db
from ..oidc import fapi
from ..scopes import USER_SCOPES
from ..security import new_token, sha256_hex
from .models import Client

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
SUBJECT_TYPES = ("pairwise", "public")
ID_TOKEN_ALGS = SIGNING_ALGORITHMS
PROFILES = fapi.PROFILES
REQUEST_OBJECT_ALGS = fapi.CLIENT_ALGORITHMS
_SCOPE_TOKEN = re.compile(r"^[a-z][a-z0-9_.:\-]{0,63}$")


class InvalidRegistration(ValueError):
    """A registration field is wrong; ``field`` names it as the CLI option does."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Registration:
    """Everything a client is registered with, checked by :func:`validate_registration`."""

    name: str
    redirect_uris: list[str] = field(default_factory=list)
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    scope: str = "openid"
    token_endpoint_auth_method: str = "client_secret_basic"
    grant_types: list[str] = field(default_factory=lambda: ["authorization_code", "refresh_token"])
    jwks_uri: str | None = None
    jwks: dict[str, Any] | None = None
    subject_type: str = "pairwise"
    sector_identifier: str | None = None
    #: None: the profile's default (RS256, or ES256 for a FAPI 2.0 client).
    id_token_signed_response_alg: str | None = None
    backchannel_logout_uri: str | None = None
    trusted: bool = False
    profile: str = fapi.STANDARD
    #: None: what the profile asks (a FAPI 2.0 client must push its requests and bind its tokens with DPoP).
    require_par: bool | None = None
    dpop_bound: bool | None = None
    request_object_signing_alg: str | None = None
    resources: list[str] = field(default_factory=list)


def validate_registration(reg: Registration) -> Registration:
    """Return the registration with normalised values, or raise :class:`InvalidRegistration`."""
    name = reg.name.strip()
    if not name or len(name) > 200:
        raise InvalidRegistration("name", "must be 1 to 200 characters")
    if reg.token_endpoint_auth_method not in AUTH_METHODS:
        raise InvalidRegistration("auth-method", f"must be one of {', '.join(AUTH_METHODS)}")
    grant_types = list(dict.fromkeys(reg.grant_types))
    if not grant_types:
        raise InvalidRegistration("grant-type", "at least one grant type is needed")
    for grant_type in grant_types:
        if grant_type not in GRANT_TYPES:
            raise InvalidRegistration("grant-type", f"{grant_type!r} is not one of {', '.join(GRANT_TYPES)}")
    if "refresh_token" in grant_types and "authorization_code" not in grant_types:
        raise InvalidRegistration("grant-type", "refresh_token needs authorization_code")
    if "client_credentials" in grant_types and reg.token_endpoint_auth_method == "none":
        raise InvalidRegistration("grant-type", "client_credentials needs a client that authenticates")

    scopes = list(dict.fromkeys(reg.scope.split()))
    for scope in scopes:
        if not _SCOPE_TOKEN.match(scope):
            raise InvalidRegistration("scope", f"{scope!r} is not a valid scope name")
    if "authorization_code" in grant_types and "openid" not in scopes:
        raise InvalidRegistration("scope", "a client that logs users in needs the openid scope")

    redirect_uris = list(dict.fromkeys(reg.redirect_uris))
    if "authorization_code" in grant_types and not redirect_uris:
        raise InvalidRegistration("redirect-uri", "at least one redirect URI is needed for authorization_code")
    for uri in redirect_uris:
        _check_uri("redirect-uri", uri)
    post_logout = list(dict.fromkeys(reg.post_logout_redirect_uris))
    for uri in post_logout:
        _check_uri("post-logout-redirect-uri", uri)

    jwks = reg.jwks
    jwks_uri = reg.jwks_uri or None
    if jwks is not None and jwks_uri:
        raise InvalidRegistration("jwks", "give either --jwks or --jwks-uri, not both")
    if jwks is not None:
        _check_public_jwks(jwks)
    if jwks_uri:
        _check_uri("jwks-uri", jwks_uri, allow_http_loopback=True)
    if reg.token_endpoint_auth_method == "private_key_jwt" and jwks is None and not jwks_uri:
        raise InvalidRegistration("jwks", "private_key_jwt needs the client's public keys: --jwks or --jwks-uri")

    backchannel = (reg.backchannel_logout_uri or "").strip() or None
    if backchannel:
        _check_uri("backchannel-logout-uri", backchannel)

    if reg.subject_type not in SUBJECT_TYPES:
        raise InvalidRegistration("subject-type", f"must be one of {', '.join(SUBJECT_TYPES)}")
    resources = list(dict.fromkeys(reg.resources))
    for uri in resources:
        _check_resource(uri)
    sector = (reg.sector_identifier or "").strip() or None
    reg = _with_profile_rules(reg, grant_types)
    return dataclasses.replace(
        reg,
        resources=resources,
        name=name,
        grant_types=grant_types,
        scope=" ".join(scopes),
        redirect_uris=redirect_uris,
        post_logout_redirect_uris=post_logout,
        jwks_uri=jwks_uri,
        sector_identifier=sector,
        backchannel_logout_uri=backchannel,
    )


def _with_profile_rules(reg: Registration, grant_types: list[str]) -> Registration:
    """The registration with its profile's defaults filled in, or :class:`InvalidRegistration` where it breaks
    one of the profile's rules (idp.oidc.fapi)."""
    if reg.profile not in PROFILES:
        raise InvalidRegistration("profile", f"must be one of {', '.join(PROFILES)}")
    fapi2 = reg.profile == fapi.FAPI2
    allowed = fapi.FAPI2_ALGORITHMS if fapi2 else ID_TOKEN_ALGS
    id_token_alg = reg.id_token_signed_response_alg or ("ES256" if fapi2 else "RS256")
    if id_token_alg not in allowed:
        raise InvalidRegistration("id-token-alg", f"must be one of {', '.join(allowed)}")
    object_alg = reg.request_object_signing_alg or None
    if object_alg is not None and object_alg not in (fapi.FAPI2_ALGORITHMS if fapi2 else REQUEST_OBJECT_ALGS):
        allowed_objects = fapi.FAPI2_ALGORITHMS if fapi2 else REQUEST_OBJECT_ALGS
        raise InvalidRegistration("request-object-alg", f"must be one of {', '.join(allowed_objects)}")
    if object_alg is not None and reg.jwks is None and not reg.jwks_uri:
        raise InvalidRegistration("jwks", "signed request objects need the client's public keys: --jwks or --jwks-uri")
    if fapi2:
        # FAPI 2.0 Security Profile section 5.3.2.1: confidential clients, private_key_jwt, sender-constrained tokens.
        if reg.token_endpoint_auth_method != "private_key_jwt":
            raise InvalidRegistration("auth-method", "a fapi2 client authenticates with private_key_jwt")
        if reg.require_par is False:
            raise InvalidRegistration("require-par", "a fapi2 client must push its authorization requests")
        if reg.dpop_bound is False:
            raise InvalidRegistration("dpop-bound", "a fapi2 client's access tokens are DPoP-bound")
        if "authorization_code" not in grant_types:
            raise InvalidRegistration("grant-type", "a fapi2 client logs users in with authorization_code")
    return dataclasses.replace(
        reg,
        id_token_signed_response_alg=id_token_alg,
        request_object_signing_alg=object_alg,
        require_par=bool(reg.require_par) or fapi2,
        dpop_bound=bool(reg.dpop_bound) or fapi2,
    )


def _check_resource(uri: str) -> None:
    # RFC 8707 section 2: an absolute URI without a fragment (a query is discouraged, and refused here).
    parts = urlsplit(uri)
    if not parts.scheme or not parts.netloc or parts.fragment or "#" in uri or parts.query:
        raise InvalidRegistration("resource", f"{uri!r} must be an absolute URI without query or fragment")
    _check_uri("resource", uri)


def _check_uri(option: str, uri: str, allow_http_loopback: bool = True) -> None:
    parts = urlsplit(uri)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise InvalidRegistration(option, f"{uri!r} must be an absolute https URL")
    if parts.fragment or "#" in uri:
        raise InvalidRegistration(option, f"{uri!r} must not have a fragment")
    if parts.scheme == "http" and not (allow_http_loopback and is_loopback_host(parts.hostname)):
        raise InvalidRegistration(option, f"{uri!r} must use https (http only for localhost or a loopback address)")


def _check_public_jwks(jwks: dict[str, Any]) -> None:
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise InvalidRegistration("jwks", 'must be a JWK set: {"keys": [ ... ]} with at least one key')
    for key in jwks["keys"]:
        if not isinstance(key, dict) or "d" in key or "k" in key:
            raise InvalidRegistration("jwks", "must hold public asymmetric keys only (no private or symmetric key)")
    try:
        KeySet.import_key_set(jwks)
    except (JoseError, ValueError, TypeError, KeyError) as error:
        raise InvalidRegistration("jwks", f"not a valid JWK set: {error}") from None


def _needs_secret(reg: Registration) -> bool:
    return reg.token_endpoint_auth_method in {"client_secret_basic", "client_secret_post"}


def create_client(reg: Registration) -> tuple[Client, str | None]:
    """Register a client (not committed); returns it with its secret, shown once and stored only hashed."""
    reg = validate_registration(reg)
    secret = new_token(32) if _needs_secret(reg) else None
    now = clock.now()
    client = Client(
        client_id=uuid.uuid4().hex,
        client_secret_hash=sha256_hex(secret) if secret else None,
        created_at=now,
        updated_at=now,
        **_columns(reg),
    )
    db.session.add(client)
    return client, secret


def _columns(reg: Registration) -> dict[str, Any]:
    return {
        "name": reg.name,
        "redirect_uris": reg.redirect_uris,
        "post_logout_redirect_uris": reg.post_logout_redirect_uris,
        "scope": reg.scope,
        "grant_types": reg.grant_types,
        "token_endpoint_auth_method": reg.token_endpoint_auth_method,
        "jwks_uri": reg.jwks_uri,
        "jwks": reg.jwks,
        "subject_type": reg.subject_type,
        "sector_identifier": reg.sector_identifier,
        "id_token_signed_response_alg": reg.id_token_signed_response_alg,
        "backchannel_logout_uri": reg.backchannel_logout_uri,
        "trusted": reg.trusted,
        "profile": reg.profile,
        "require_par": bool(reg.require_par),
        "dpop_bound": bool(reg.dpop_bound),
        "request_object_signing_alg": reg.request_object_signing_alg,
        "resources": reg.resources,
    }


def registration_of(client: Client) -> Registration:
    return Registration(
        name=client.name,
        redirect_uris=list(client.redirect_uris),
        post_logout_redirect_uris=list(client.post_logout_redirect_uris),
        scope=client.scope,
        token_endpoint_auth_method=client.token_endpoint_auth_method,
        grant_types=list(client.grant_types),
        jwks_uri=client.jwks_uri,
        jwks=client.jwks,
        subject_type=client.subject_type,
        sector_identifier=client.sector_identifier,
        id_token_signed_response_alg=client.id_token_signed_response_alg,
        backchannel_logout_uri=client.backchannel_logout_uri,
        trusted=client.trusted,
        profile=client.profile,
        require_par=client.require_par,
        dpop_bound=client.dpop_bound,
        request_object_signing_alg=client.request_object_signing_alg,
        resources=list(client.resources or []),
    )


def update_client(client: Client, reg: Registration) -> str | None:
    """Apply a changed registration (not committed).

    Returns a new secret when the client moved to a secret-based method from one without a secret.
    """
    reg = validate_registration(reg)
    secret = None
    if _needs_secret(reg) and not client.client_secret_hash:
        secret = new_token(32)
        client.client_secret_hash = sha256_hex(secret)
    elif not _needs_secret(reg):
        client.client_secret_hash = None
    for column, value in _columns(reg).items():
        setattr(client, column, value)
    client.updated_at = clock.now()
    return secret


def rotate_secret(client: Client) -> str:
    if client.token_endpoint_auth_method not in {"client_secret_basic", "client_secret_post"}:
        raise InvalidRegistration("auth-method", f"a {client.token_endpoint_auth_method} client has no secret")
    secret = new_token(32)
    client.client_secret_hash = sha256_hex(secret)
    client.updated_at = clock.now()
    return secret


def get_client(client_id: str, fresh: bool = False) -> Client | None:
    """The registered client, or None.

    Relying parties call the token, introspection and userinfo endpoints far more often than clients change, so
    a client read from the database is kept in this process for ``server.client_cache_seconds``, detached from
    any session. A change made with ``idp clients`` reaches other processes within that time (at once in the
    process that made it); ``fresh`` reads the database (admin commands).
    """
    # Ids are printable ASCII; anything else (a NUL byte, which PostgreSQL refuses) names no client.
    if not isinstance(client_id, str) or not client_id or len(client_id) > 64:
        return None
    if not (client_id.isascii() and client_id.isprintable()):
        return None
    from ..provider import current_provider

    provider = current_provider()
    ttl = provider.config.server.client_cache_seconds
    if fresh or ttl == 0:
        return db.session.get(Client, client_id)
    cache = provider.client_cache
    cached = cache.get(client_id)
    now = time.monotonic()
    if cached is not None and cached[0] > now:
        # A detached copy shared by the requests of this process: it is only read (every column is loaded, and a
        # client has no relationships to load), never added to a session; changes go through ``fresh``.
        return cached[1]
    client = db.session.get(Client, client_id)
    if client is not None:
        copy = Client(**{column.key: getattr(client, column.key) for column in Client.__table__.columns})
        make_transient_to_detached(copy)
        if len(cache) > 10_000:  # a bound, whatever happens; clients number in the hundreds
            cache.clear()
        cache[client_id] = (now + ttl, copy)
    return client


def forget_cached_clients() -> None:
    """Drop this process's cached clients (after ``idp clients`` changed one)."""
    from ..provider import current_provider

    current_provider().client_cache.clear()


def client_names(client_ids: set[str]) -> dict[str, str]:
    """The registered name of each of ``client_ids`` that is still registered, read in one query."""
    if not client_ids:
        return {}
    rows = db.session.execute(select(Client.client_id, Client.name).where(Client.client_id.in_(client_ids)))
    return {client_id: name for client_id, name in rows}


def list_clients() -> list[Client]:
    return list(db.session.scalars(select(Client).order_by(Client.created_at, Client.client_id)))


def delete_client(client: Client) -> None:
    db.session.delete(client)


def is_user_scope(scope: str) -> bool:
    return scope in USER_SCOPES
