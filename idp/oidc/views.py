"""The ``oidc`` blueprint: the protocol endpoints and the consent page. Views stay thin; the work is in
:mod:`idp.oidc.endpoints` and the grants."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import OAuth2Error
from flask import Blueprint, Response, abort, g, redirect, render_template, request, url_for
from flask_babel import gettext
from werkzeug.datastructures import MultiDict

from ..extensions import csrf
from ..provider import current_provider
from ..rate_limits import charge_address
from ..scopes import claims_for_scopes
from ..store import audit, commit
from ..store.consents import record_consent
from ..web.forms import ConsentForm, LogoutForm
from ..web.login_state import current_session
from . import dpop, paths
from .claims import extra_claims_allowed, parse_claims_request
from .endpoints import authorize as authorization
from .endpoints import discovery
from .grants.authorization_code import code_exchange_committed, restore_consumed_code
from .server import authorization_server

bp = Blueprint("oidc", __name__)

# Relying parties' browsers call these from other origins (single-page apps, discovery by a JS library).
CORS_HEADERS = {"Access-Control-Allow-Origin": "*"}


@bp.get(paths.DISCOVERY)
@bp.get(paths.OAUTH_METADATA)
@bp.get(paths.JWKS)
def public_document() -> Response:
    # Answered by discovery.PublishedDocuments before Flask; these routes exist so url_for and the URL map know
    # them, and answer only when a request reaches the app anyway (the keys could not be re-read: then this raises
    # and the error handlers answer 503).
    return discovery.document_response(current_provider(), request)


@bp.route(paths.AUTHORIZE, methods=["GET", "POST"])
@csrf.exempt  # a relying party's auto-submitted form (OpenID Connect Core 3.1.2.1 allows POST)
def authorize() -> Response:
    params = MultiDict(request.args) if request.method == "GET" else MultiDict(request.form)
    try:
        return authorization.start(params)
    except authorization.AuthorizationPageError as error:
        return authorization.render_page_error(error)


@bp.get(paths.AUTHORIZE + "/resume")
def resume() -> Response:
    try:
        return authorization.resume(authorization.load_pending(request.args.get("tx")))
    except authorization.AuthorizationPageError as error:
        return authorization.render_page_error(error)


@bp.route("/consent", methods=["GET", "POST"])
def consent() -> Response:
    try:
        pending = authorization.load_pending(request.args.get("tx"))
        params = pending.multidict
        client, _redirect_uri = authorization.check_client_and_redirect_uri(params)
    except authorization.AuthorizationPageError as error:
        return authorization.render_page_error(error)
    login = current_session()
    if login is None:
        return redirect(url_for("oidc.resume", tx=pending.id))
    scopes = (params.get("scope") or "").split()
    try:
        claims_request = parse_claims_request(params.get("claims"))
    except OAuth2Error:
        return redirect(url_for("oidc.resume", tx=pending.id))
    extra = extra_claims_allowed(claims_request, client, scopes)
    form = ConsentForm()
    if form.validate_on_submit():
        if form.decision.data == "deny":
            audit.record("consent.denied", user_id=login.user_id, client_id=client.client_id)
            commit()
            return authorization.deny(pending)
        record_consent(login.user_id, client.client_id, scopes, extra)
        audit.record("consent.granted", user_id=login.user_id, client_id=client.client_id, scope=" ".join(scopes))
        commit()
        pending.consented = True
        pending.save()
        return redirect(url_for("oidc.resume", tx=pending.id), 303)
    claims = [c for c in claims_for_scopes(scopes) if c != "sub"] + extra
    return render_template("consent.html", form=form, client=client, claims=claims, user=login.user, tx=pending.id)


@bp.post(paths.TOKEN)
@csrf.exempt
def token() -> Response:
    charge_address(current_provider().config.limits.token_per_ip, "token")
    try:
        dpop.check_request_proof()
    except OAuth2Error as error:
        return token_endpoint_headers(dpop.with_nonce(authorization_server().handle_error_response(None, error)))
    try:
        response = authorization_server().create_token_response()
        if response.status_code == 200:
            # One commit for the grant, the refresh token and the audit row, after the whole answer was made.
            commit()
            code_exchange_committed()
    except Exception as error:
        # PostgreSQL failed after the code was taken from Redis: put it back, so the retry our 503 invites
        # can still succeed (nothing was committed, so the code was never used).
        restore_consumed_code(error)
        raise
    return token_endpoint_headers(dpop.with_nonce(response))


def token_endpoint_headers(response: Response) -> Response:
    response.headers.update(CORS_HEADERS)
    response.headers["Access-Control-Expose-Headers"] = "DPoP-Nonce, WWW-Authenticate"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@bp.post(paths.PUSHED_AUTHORIZATION_REQUEST)
@csrf.exempt
def pushed_authorization_request() -> Response:
    charge_address(current_provider().config.limits.token_per_ip, "token")
    try:
        dpop.check_request_proof()
    except OAuth2Error as error:
        return token_endpoint_headers(dpop.with_nonce(authorization_server().handle_error_response(None, error)))
    response = authorization_server().create_endpoint_response("pushed_authorization_request")
    if response.status_code == 201:
        commit()  # nothing of the request is in the database, but client authentication may have read it
    return token_endpoint_headers(dpop.with_nonce(response))


@bp.post(paths.REVOCATION)
@csrf.exempt
def revoke() -> Response:
    return authorization_server().create_endpoint_response("revocation")


@bp.post(paths.INTROSPECTION)
@csrf.exempt
def introspect() -> Response:
    response = authorization_server().create_endpoint_response("introspection")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route(paths.USERINFO, methods=["GET", "POST"])
@csrf.exempt
def userinfo() -> Response:
    response = dpop.with_nonce(authorization_server().create_endpoint_response("userinfo"))
    response.headers.update(CORS_HEADERS)
    response.headers["Access-Control-Expose-Headers"] = "DPoP-Nonce, WWW-Authenticate"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route(paths.END_SESSION, methods=["GET", "POST"])
@csrf.exempt  # a relying party's logout request may be a cross-site POST; our own confirmation is checked below
def end_session() -> Response:
    server = authorization_server()
    confirming = request.method == "POST" and "confirm" in request.form
    if confirming:
        if not LogoutForm().validate_on_submit():
            abort(400)
        g.logout_confirmed_by_user = True
    try:
        end_request = server.validate_endpoint_request("end_session")
    except OAuth2Error as error:
        return render_template("error.html", message=error.get_error_description()), 400
    data = end_request.request.payload.data
    wanted_return = data.get("post_logout_redirect_uri")
    if end_request.needs_confirmation and not confirming:
        if current_session() is None:
            return render_template("logged_out.html", return_refused=bool(wanted_return))
        keep = ("client_id", "post_logout_redirect_uri", "state", "ui_locales")
        params = {name: data[name] for name in keep if data.get(name)}
        if end_request.client is not None:
            # Named by a hint this form does not carry on: the confirmed request still knows the client.
            params["client_id"] = end_request.client.client_id
        return render_template("logout_confirm.html", form=LogoutForm(), client=end_request.client, params=params)
    if wanted_return and end_request.redirect_uri is None and not confirming:
        # RP-Initiated Logout section 3: never redirect to an unregistered address; say so, change nothing.
        return render_template(
            "error.html",
            message=gettext("The address to return to after logout is not registered for this website."),
        ), 400
    response = server.create_endpoint_response("end_session", end_request)
    if response is None:
        return render_template("logged_out.html", return_refused=bool(wanted_return))
    return response
