"""The authorization endpoint (RFC 6749 section 4.1.1, OpenID Connect Core section 3.1.2).

A request goes through named checks in order:

1. :func:`check_client`: an unknown client gets an error page, never a redirect;
2. :func:`resolve_request`: a ``request_uri`` is replaced by the parameters its client pushed (RFC 9126; only
   ``client_id`` and ``request_uri`` come from the browser then, anything else is ignored), and a ``request``
   by the parameters of the signed request object (RFC 9101); an error here goes to the request's registered
   ``redirect_uri`` when it has one, else it is shown on a page with its error code;
3. :func:`check_client_and_redirect_uri`: a missing, repeated or unregistered ``redirect_uri`` gets an error
   page, never a redirect (RFC 6749 section 4.1.2.1);
4. :func:`check_request_parameters`: what we do not support, and values of the wrong shape;
5. :func:`check_pushed_if_required`: a client (or a server) that requires pushed requests sent one;
6. Authlib's validation: ``response_type``, scopes, PKCE (``S256`` required), ``nonce``;
7. :func:`check_dpop_jkt` and :func:`check_authorization_resources`: the DPoP key the code is bound to
   (RFC 9449 section 10) and the resource servers asked for (RFC 8707);
8. :func:`required_acr`: the assurance level asked for (an essential one we cannot meet is an error);
9. :func:`login_reason`: no session, ``prompt=login``, ``max_age`` passed, another user in ``id_token_hint``:
   the user logs in again, with the factors the requested level needs (Core 3.1.2.1);
10. :func:`check_step_up`: more factors only when the requested level is higher than the session's;
    ``loa:3`` only with a passkey (a user without one gets ``unmet_authentication_requirements``);
11. :func:`needs_consent`: nothing remembered for this client and these scopes, or ``prompt=consent``;
12. respond with a code. Every redirect back to the client, errors included, carries ``iss`` (RFC 9207).

When the user has to log in or consent, the request is kept in the key-value store as a pending
authorization, bound to this browser, and resumed afterwards from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error, OAuth2Payload, OAuth2Request
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from flask import Response, redirect, render_template, session, url_for
from flask_babel import lazy_gettext as _l
from werkzeug.datastructures import MultiDict

from ... import clock
from ...i18n import first_supported
from ...provider import current_provider
from ...scopes import ACR_ONE_FACTOR, ACR_PHISHING_RESISTANT, ACR_VALUES, acr_meets, acr_rank
from ...security import new_token
from ...store import read_outside_a_transaction
from ...store.clients import get_client
from ...store.consents import consent_covers, find_consent
from ...store.models import Client, UserSession
from ...store.passkeys import has_passkeys
from ...web.login_state import browser_binding, current_session
from .. import paths
from ..authorization import EndUserAuthorization
from ..claims import extra_claims_allowed, parse_claims_request, subject_for
from ..dpop import check_thumbprint
from ..errors import (
    RegistrationNotSupportedError,
    RequestUriNotSupportedError,
    UnmetAuthenticationRequirementsError,
    UnsupportedResponseTypeError,
)
from ..fapi import client_profile
from ..pushed_requests import REQUEST_URI_PREFIX, take_pushed_request
from ..request_object import unpack_request_object
from ..resource_indicators import check_authorization_resources
from ..server import authorization_server, redirect_with_error
from ..tokens import read_id_token_hint

PENDING_KEY = "pending-authorization:"
SINGLE_VALUED = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "prompt",
    "max_age",
    "dpop_jkt",
)


class AuthorizationPageError(Exception):
    """A request we cannot answer by redirecting to the client: shown to the user as a page (with the protocol's
    error code, ``error``, for the client's developers, when there is one)."""

    def __init__(self, message: Any, status: int = 400, error: str | None = None) -> None:
        super().__init__(str(message))
        self.message = message
        self.status = status
        self.error = error


@dataclass
class PendingAuthorization:
    """An authorization request waiting for the user to log in or consent."""

    id: str
    params: list[tuple[str, str]]
    started_at: int
    binding: str
    consented: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def multidict(self) -> MultiDict[str, str]:
        return MultiDict(self.params)

    def save(self) -> None:
        record = {
            "params": self.params,
            "started_at": self.started_at,
            "binding": self.binding,
            "consented": self.consented,
            "extra": self.extra,
        }
        ttl = current_provider().config.tokens.login_transaction_ttl
        current_provider().store.put(PENDING_KEY + self.id, record, ttl)

    def discard(self) -> None:
        current_provider().store.delete(PENDING_KEY + self.id)


def load_pending(pending_id: str | None) -> PendingAuthorization:
    """The pending authorization of this browser, or an error page (expired, unknown, other browser)."""
    record = None
    if pending_id and len(pending_id) <= 64:
        record = current_provider().store.get(PENDING_KEY + pending_id)
    if record is None:
        raise AuthorizationPageError(
            _l("This sign-in request has expired. Go back to the website you came from and try again.")
        )
    pending = PendingAuthorization(
        id=pending_id or "",
        params=[tuple(pair) for pair in record["params"]],  # type: ignore[misc]
        started_at=record["started_at"],
        binding=record["binding"],
        consented=record.get("consented", False),
        extra=record.get("extra", {}),
    )
    if pending.binding != session.get("binding"):
        raise AuthorizationPageError(
            _l("This sign-in request was started in another browser. Start again from the website.")
        )
    return pending


class ParamsPayload(OAuth2Payload):
    def __init__(self, params: MultiDict[str, str]) -> None:
        self._params = params

    @property
    def data(self) -> MultiDict[str, str]:
        return self._params

    @property
    def datalist(self) -> dict[str, list[str]]:
        return {key: self._params.getlist(key) for key in self._params}


class ParamsRequest(OAuth2Request):
    """An authorization request rebuilt from its parameters, so it can be resumed after a login."""

    def __init__(self, params: MultiDict[str, str]) -> None:
        super().__init__("GET", current_provider().url(paths.AUTHORIZE))
        self.payload = ParamsPayload(params)
        self._params = params

    @property
    def args(self) -> MultiDict[str, str]:
        return self._params

    @property
    def form(self) -> MultiDict[str, str]:
        return MultiDict()


# -- the checks, in order -------------------------------------------------------------------------


def check_client(params: MultiDict[str, str]) -> Client:
    if len(params.getlist("client_id")) > 1:
        raise AuthorizationPageError(_l("The request is malformed: '%(name)s' appears twice.", name="client_id"))
    client_id = params.get("client_id")
    if not client_id:
        raise AuthorizationPageError(_l("The request does not say which website is asking (no client_id)."))
    client = get_client(client_id)
    if client is None or not client.check_grant_type("authorization_code"):
        raise AuthorizationPageError(_l("The website that sent you here is not registered with Hoviyat."))
    return client


def resolve_request(params: MultiDict[str, str], client: Client) -> tuple[MultiDict[str, str], bool]:
    """The request's own parameters: those pushed under its ``request_uri`` (RFC 9126 section 4) or signed in its
    ``request`` (RFC 9101 section 5), else ``params`` as they came; and whether the request was pushed."""
    request_uri = params.get("request_uri")
    if request_uri is not None:
        if "request" in params:
            raise InvalidRequestError("The 'request' and 'request_uri' parameters are mutually exclusive.")
        if not request_uri.startswith(REQUEST_URI_PREFIX):
            # Only pushed requests' URNs: a request object is never fetched from another host.
            raise RequestUriNotSupportedError("Only request_uri values from the pushed authorization endpoint work.")
        pushed = take_pushed_request(request_uri, client)
        return pushed, True
    return unpack_request_object(params, client), False


def check_client_and_redirect_uri(params: MultiDict[str, str]) -> tuple[Client, str]:
    if len(params.getlist("redirect_uri")) > 1:
        raise AuthorizationPageError(_l("The request is malformed: '%(name)s' appears twice.", name="redirect_uri"))
    client = check_client(params)
    redirect_uri = params.get("redirect_uri")
    if not redirect_uri:
        raise AuthorizationPageError(_l("The request does not say where to return (no redirect_uri)."))
    if not client.check_redirect_uri(redirect_uri):
        raise AuthorizationPageError(
            _l("The return address in the request is not registered for this website, so we will not send you there.")
        )
    return client, redirect_uri


def check_request_parameters(params: MultiDict[str, str]) -> None:
    for name in SINGLE_VALUED:
        if len(params.getlist(name)) > 1:
            raise InvalidRequestError(f"The '{name}' parameter appears more than once.")
    if not params.get("response_type"):
        raise InvalidRequestError("The 'response_type' parameter is missing.")
    if params.get("response_type") != "code":
        # Checked before Authlib, whose message would echo the raw (possibly non-ASCII) value.
        raise UnsupportedResponseTypeError("Only response_type=code is supported.")
    if "request" in params or "request_uri" in params:
        # resolve_request took them out; in a request object or a pushed request they are not allowed.
        raise InvalidRequestError("The 'request' and 'request_uri' parameters cannot be nested.")
    if "registration" in params:
        raise RegistrationNotSupportedError("The 'registration' parameter is not supported.")
    if params.get("response_mode", "query") != "query":
        raise InvalidRequestError("Only response_mode=query is supported.")
    prompts = params.get("prompt", "").split()
    if "none" in prompts and len(prompts) > 1:
        raise InvalidRequestError("The prompt value 'none' cannot be combined with another value.")
    max_age = params.get("max_age")
    if max_age is not None and (not max_age.isascii() or not max_age.isdigit() or len(max_age) > 10):
        raise InvalidRequestError("The 'max_age' parameter must be a whole number of seconds.")
    hint = params.get("id_token_hint")
    if hint and read_id_token_hint(hint) is None:
        raise InvalidRequestError("The 'id_token_hint' is not an ID token issued by this provider.")


def check_pushed_if_required(client: Client, pushed: bool) -> None:
    """RFC 9126 section 6 (and FAPI 2.0 section 5.3.2.2): such a client's requests come only by reference."""
    if not pushed and client_profile(client).requires_par:
        raise InvalidRequestError("This client must push its authorization requests (RFC 9126) first.")


def check_dpop_jkt(params: MultiDict[str, str]) -> None:
    """RFC 9449 section 10: ``dpop_jkt`` binds the code to a DPoP key; the token request must prove it."""
    dpop_jkt = params.get("dpop_jkt")
    if dpop_jkt is not None:
        check_thumbprint(dpop_jkt)


def required_acr(params: MultiDict[str, str], claims_request: dict[str, Any] | None) -> str:
    """The assurance level this request needs (Core sections 3.1.2.1 and 5.5.1.1).

    An essential ``acr`` in the ``claims`` parameter must be met: the lowest level among those it accepts, an
    error when it names only levels we do not have. Otherwise ``acr_values`` (or a voluntary ``acr`` request) is
    a preference list: the first level we support is the one given.
    """
    requested = ((claims_request or {}).get("id_token") or {}).get("acr")
    preferences: list[Any] = []
    if isinstance(requested, dict):
        values = requested.get("values") or ([requested["value"]] if "value" in requested else [])
        supported = [v for v in values if v in ACR_VALUES]  # parse_claims_request made sure "values" is a list
        if requested.get("essential") and values:
            if not supported:
                raise UnmetAuthenticationRequirementsError("The essential acr value requested cannot be met.")
            return min(supported, key=acr_rank)
        preferences = supported
    preferences += params.get("acr_values", "").split()
    return next((value for value in preferences if value in ACR_VALUES), ACR_ONE_FACTOR)


def requested_acr(pending: PendingAuthorization | None) -> str:
    """The level the pending request needs (the sign-in pages offer what reaches it); ``loa:1`` without one."""
    if pending is None:
        return ACR_ONE_FACTOR
    params = pending.multidict
    try:
        return required_acr(params, parse_claims_request(params.get("claims")))
    except OAuth2Error:
        return ACR_ONE_FACTOR  # the request fails when resumed; nothing more to offer before that


def check_step_up(acr: str, login: UserSession, prompts: list[str]) -> bool:
    """True when the user must prove more factors to reach ``acr``. ``loa:3`` is reached only with a passkey:
    without one, or without a way to ask (``prompt=none``), the relying party is told so (OpenID Connect EAP
    ACR Values 1.0, ``unmet_authentication_requirements``)."""
    if acr_meets(login.acr, acr):
        return False
    if acr == ACR_PHISHING_RESISTANT:
        if not has_passkeys(login.user_id):
            raise UnmetAuthenticationRequirementsError("urn:hoviyat:loa:3 needs a passkey; this user has none.")
        if "none" in prompts:
            raise UnmetAuthenticationRequirementsError("urn:hoviyat:loa:3 needs the user to use a passkey.")
    elif "none" in prompts:
        raise LoginRequiredError("A second factor is needed.")
    return True


def login_reason(
    params: MultiDict[str, str], client: Client, login: UserSession | None, pending: PendingAuthorization | None
) -> str | None:
    """Why the user must log in (again) before this request can be answered, or None."""
    if login is None:
        return "no_session"
    # A login finished during this very request satisfies prompt=login, max_age and a changed account.
    if pending is not None and login.auth_time.timestamp() >= pending.started_at:
        return None
    if "login" in params.get("prompt", "").split():
        return "prompt_login"
    max_age = params.get("max_age")
    # Times are whole seconds, so the elapsed time may read up to a second short: ">=" errs towards asking
    # once too often, never too late, and makes max_age=0 behave as prompt=login (Core 3.1.2.1).
    if max_age is not None and clock.timestamp() - login.auth_time.timestamp() >= int(max_age):
        return "max_age"
    hint = params.get("id_token_hint")
    if hint:
        claims = read_id_token_hint(hint) or {}
        if claims.get("sub") != subject_for(login.user, client):
            return "other_user"
    return None


def needs_consent(
    params: MultiDict[str, str],
    client: Client,
    login: UserSession,
    scopes: list[str],
    extra_claims: list[str],
    pending: PendingAuthorization | None,
) -> bool:
    if pending is not None and pending.consented:
        return False
    if "consent" in params.get("prompt", "").split():
        return True
    if client.trusted:
        return False
    return not consent_covers(find_consent(login.user_id, client.client_id), scopes, extra_claims)


# -- running the checks -----------------------------------------------------------------------------


def start(params: MultiDict[str, str]) -> Response:
    """A new authorization request from a relying party."""
    client = check_client(params)
    try:
        params, pushed = resolve_request(params, client)
    except OAuth2Error as error:
        return unresolved_request(error, params, client)
    client, redirect_uri = check_client_and_redirect_uri(params)
    locale = first_supported(params.get("ui_locales"))
    if locale:
        session["locale"] = locale
    return proceed(params, client, redirect_uri, pending=None, pushed=pushed)


def unresolved_request(error: OAuth2Error, params: MultiDict[str, str], client: Client) -> Response:
    """A pushed request or request object that cannot be used: back to the request's redirect URI if it names a
    registered one (with its state), else a page that gives the error code."""
    redirect_uri = params.get("redirect_uri")
    if redirect_uri and len(params.getlist("redirect_uri")) == 1 and client.check_redirect_uri(redirect_uri):
        return redirect_with_error(error, redirect_uri, params.get("state"))
    raise AuthorizationPageError(
        _l("This sign-in request cannot be used: it has expired, was used already, or is not valid."),
        error=error.error,
    )


def resume(pending: PendingAuthorization) -> Response:
    """Continue a request after the user logged in or consented."""
    params = pending.multidict
    # The registration may have changed while the user was typing; check it again.
    client, redirect_uri = check_client_and_redirect_uri(params)
    return proceed(params, client, redirect_uri, pending=pending, pushed=bool(pending.extra.get("pushed")))


def proceed(
    params: MultiDict[str, str],
    client: Client,
    redirect_uri: str,
    pending: PendingAuthorization | None,
    pushed: bool = False,
) -> Response:
    server = authorization_server()
    request = ParamsRequest(params)
    # What follows only reads the database (the login session, the consent; the code and the pending request
    # live in the key-value store), bar the session's occasional one-statement "last seen" touch: on PostgreSQL,
    # no BEGIN and ROLLBACK round trips around those reads, on every code flow.
    read_outside_a_transaction()
    login = current_session()
    try:
        check_request_parameters(params)
        check_pushed_if_required(client, pushed)
        grant = server.get_consent_grant(request=request, end_user=login.user if login else None)
        check_dpop_jkt(params)
        check_authorization_resources(client, params)
        claims_request = parse_claims_request(params.get("claims"))
        acr = required_acr(params, claims_request)
        prompts = params.get("prompt", "").split()
        reason = login_reason(params, client, login, pending)
        if reason is not None:
            if "none" in prompts:
                raise LoginRequiredError()
            return _interact("auth.login", params, pending, pushed)
        assert login is not None
        if check_step_up(acr, login, prompts):
            return _interact("auth.second_factor", params, pending, pushed)
        scopes = request.scope.split()
        extra_claims = extra_claims_allowed(claims_request, client, scopes)
        if needs_consent(params, client, login, scopes, extra_claims, pending):
            if "none" in prompts:
                raise ConsentRequiredError()
            return _interact("oidc.consent", params, pending, pushed)
    except OAuth2Error as error:
        if pending is not None:
            pending.discard()
        return redirect_with_error(error, redirect_uri, params.get("state"))
    if pending is not None:
        pending.discard()
    authorization = EndUserAuthorization(user=login.user, session=login, claims_request=claims_request)
    return server.create_authorization_response(request=request, grant_user=authorization, grant=grant)


def _interact(
    endpoint: str, params: MultiDict[str, str], pending: PendingAuthorization | None, pushed: bool
) -> Response:
    if pending is None:
        pending = PendingAuthorization(
            id=new_token(24),
            params=list(params.items(multi=True)),
            started_at=clock.timestamp(),
            binding=browser_binding(),
        )
        pending.extra["pushed"] = pushed
        pending.save()
    return redirect(url_for(endpoint, tx=pending.id))


def deny(pending: PendingAuthorization) -> Response:
    """The user refused: ``access_denied`` to the client (RFC 6749 section 4.1.2.1)."""
    params = pending.multidict
    _client, redirect_uri = check_client_and_redirect_uri(params)
    pending.discard()
    server = authorization_server()
    request = ParamsRequest(params)
    try:
        login = current_session()
        grant = server.get_consent_grant(request=request, end_user=login.user if login else None)
    except OAuth2Error as error:
        return redirect_with_error(error, redirect_uri, params.get("state"))
    return server.create_authorization_response(request=request, grant_user=None, grant=grant)


def render_page_error(error: AuthorizationPageError) -> tuple[str, int]:
    return render_template("error.html", message=error.message, error_code=error.error), error.status
