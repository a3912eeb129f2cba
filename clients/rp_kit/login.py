"""Logging in with Hoviyat: how a relying party should integrate.

- Authlib's Flask client, configured from the provider's discovery document.
- The authorization code flow with PKCE (S256), ``state`` and ``nonce`` (Authlib checks both), and the
  ``iss`` of the response compared with the issuer (RFC 9207, against mix-up attacks).
- The ID token's signature, issuer, audience, expiry and nonce checked by Authlib against the JWKS.
- Tokens kept on the server, in the site's database; the browser's cookie holds only a random session id.
- Logout through the provider's ``end_session_endpoint`` (RP-Initiated Logout) with ``id_token_hint``,
  ``post_logout_redirect_uri`` and ``state``; and Back-Channel Logout: the provider tells this site when the
  user's provider session ends, and the local sessions of that provider session end with it.
- A site that handles money registers under the FAPI 2.0 profile and sets ``keys_file``: its login then goes
  through :mod:`clients.rp_kit.high_assurance` (PAR, ``private_key_jwt``, DPoP-bound tokens) instead of
  Authlib's client; the checks on the way back are the same.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode, urlsplit

from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Blueprint, Flask, Response, abort, flash, g, redirect, render_template, request, session, url_for
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFProtect
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import DateTime, Integer, String, Text, delete, select
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from .high_assurance import HighAssuranceClient, HighAssuranceError, PendingLogin
from .settings import RpSettings

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
SESSION_LIFETIME = dt.timedelta(hours=8)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class RpUserMixin:
    """A person as this site knows them: keyed by the ``sub`` Hoviyat gives this site (pairwise), with the
    verified claims it received. Nothing here is typed by the user."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sub: Mapped[str] = mapped_column(String(255), unique=True)
    national_id: Mapped[str | None] = mapped_column(String(10), index=True)
    given_name: Mapped[str | None] = mapped_column(String(100))
    family_name: Mapped[str | None] = mapped_column(String(100))
    birthdate: Mapped[str | None] = mapped_column(String(10))
    phone_number: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)

    @property
    def name(self) -> str:
        return f"{self.given_name or ''} {self.family_name or ''}".strip()


class RpSessionMixin:
    """A login at this site. The tokens stay here; ``sid`` ties it to the provider session."""

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    sub: Mapped[str] = mapped_column(String(255), index=True)
    sid: Mapped[str | None] = mapped_column(String(64), index=True)
    id_token: Mapped[str] = mapped_column(Text)
    access_token: Mapped[str] = mapped_column(Text)
    refresh_token: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)

    @declared_attr.directive
    def __tablename__(cls) -> str:
        return "login_sessions"


class ButtonForm(FlaskForm):
    """A button with nothing but a CSRF token."""


class RelyingParty:
    """Wire "Log in with Hoviyat" into a Flask app: ``/auth/login``, ``/auth/callback``, ``/auth/logout``,
    ``/auth/logged-out`` and ``/auth/backchannel-logout``. The claims a login brought are in
    :meth:`current_claims`; the site's ``User`` keeps the usual ones."""

    def __init__(
        self,
        settings: RpSettings,
        db: SQLAlchemy,
        user_model: type,
        session_model: type,
        scope: str,
        home_endpoint: str,
    ) -> None:
        self.settings = settings
        self.db = db
        self.User = user_model
        self.Session = session_model
        self.scope = scope
        self.home_endpoint = home_endpoint
        self.oauth = OAuth()
        self.csrf = CSRFProtect()
        self._jwks: KeySet | None = None
        self.high_assurance = (
            HighAssuranceClient(settings.issuer, settings.client_id, settings.keys_file)
            if settings.high_assurance
            else None
        )

    # -- set-up -------------------------------------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        self.oauth.init_app(app)
        self.oauth.register(
            name="hoviyat",
            client_id=self.settings.client_id,
            client_secret=self.settings.client_secret,
            server_metadata_url=self.settings.issuer + "/.well-known/openid-configuration",
            client_kwargs={
                "scope": self.scope,
                "code_challenge_method": "S256",
                "token_endpoint_auth_method": "client_secret_basic",
            },
        )
        self.csrf.init_app(app)
        blueprint = Blueprint("auth", __name__, url_prefix="/auth")
        blueprint.add_url_rule("/login", "login", self.login)
        blueprint.add_url_rule("/callback", "callback", self.callback)
        blueprint.add_url_rule("/logout", "logout", self.logout, methods=["POST"])
        blueprint.add_url_rule("/logged-out", "logged_out", self.logged_out)
        backchannel = self.csrf.exempt(self.backchannel_logout)  # a server-to-server POST from the provider
        blueprint.add_url_rule("/backchannel-logout", "backchannel_logout", backchannel, methods=["POST"])
        app.register_blueprint(blueprint)
        app.context_processor(lambda: {"current_user": self.current_user(), "logout_form": ButtonForm()})

    @property
    def client(self) -> Any:
        return self.oauth.hoviyat

    # -- who is logged in ------------------------------------------------------------------------------------

    def current_session(self) -> Any:
        if "rp_login" not in g:
            session_id = session.get("rp_session")
            login = self.db.session.get(self.Session, session_id) if session_id else None
            if login is not None and login.expires_at <= _now():
                login = None
            g.rp_login = login
        return g.rp_login

    def current_user(self) -> Any:
        login = self.current_session()
        return self.db.session.get(self.User, login.user_id) if login is not None else None

    def current_claims(self) -> dict[str, Any]:
        """The claims of this login's ID token. Authlib verified its signature, issuer, audience, expiry and
        nonce when it arrived; it has stayed on the server since, so reading it again needs no new check."""
        login = self.current_session()
        if login is None:
            return {}
        try:
            payload = login.id_token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            return {}
        return claims if isinstance(claims, dict) else {}

    def login_required(self, view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self.current_user() is None:
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            return view(*args, **kwargs)

        return wrapper

    # -- the flow ----------------------------------------------------------------------------------------------

    def login(self) -> Response:
        session["after_login"] = _local_path(request.args.get("next"))
        if self.high_assurance is not None:
            try:
                url, pending = self.high_assurance.start_login(self.settings.redirect_uri, self.scope, ui_locales="fa")
            except (HighAssuranceError, OSError) as error:
                return render_template("login_failed.html", reason=getattr(error, "error", "unavailable")), 503
            session["pending_login"] = dataclasses.asdict(pending)
            return redirect(url)
        return self.client.authorize_redirect(
            self.settings.redirect_uri, nonce=secrets.token_urlsafe(16), ui_locales="fa"
        )

    def callback(self) -> Response | tuple[str, int]:
        if request.args.get("error"):
            session.pop("pending_login", None)
            return render_template("login_failed.html", reason=request.args.get("error")), 400
        if request.args.get("iss") != self.settings.issuer:
            # RFC 9207: the response must come from the provider we sent the user to.
            return render_template("login_failed.html", reason="wrong_issuer"), 400
        try:
            token = self._exchange_code()
        except (OAuthError, JoseError, HighAssuranceError) as error:
            return render_template("login_failed.html", reason=getattr(error, "error", "invalid_token")), 400
        claims = token["userinfo"]  # the ID token's claims, verified by Authlib
        user = self._remember_user(claims)
        login = self.Session(
            id=secrets.token_urlsafe(32),
            user_id=user.id,
            sub=claims["sub"],
            sid=claims.get("sid"),
            id_token=token["id_token"],
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            expires_at=_now() + SESSION_LIFETIME,
        )
        self.db.session.add(login)
        self.db.session.commit()
        after = session.pop("after_login", None)
        session.clear()  # a new session id: nothing from before the login carries over
        session["rp_session"] = login.id
        return redirect(after or url_for(self.home_endpoint))

    def _exchange_code(self) -> dict[str, Any]:
        """The tokens for the code in this callback, its ``state`` checked against this browser's login."""
        if self.high_assurance is None:
            return self.client.authorize_access_token()  # Authlib checks the state and the ID token
        kept = session.get("pending_login")
        if not kept or not secrets.compare_digest(kept["state"], request.args.get("state", "")):
            raise HighAssuranceError("mismatching_state", "not the login this browser started")
        session.pop("pending_login")  # one callback per login
        return self.high_assurance.finish_login(
            PendingLogin(**kept), request.args.get("code", ""), self.settings.redirect_uri
        )

    def userinfo(self) -> dict[str, Any]:
        """The userinfo of the current login (its access token, sent as the token's type requires)."""
        login = self.current_session()
        if login is None:
            return {}
        if self.high_assurance is not None:
            return self.high_assurance.userinfo(login.access_token)
        return dict(self.client.userinfo(token={"access_token": login.access_token, "token_type": "Bearer"}))

    def _remember_user(self, claims: dict[str, Any]) -> Any:
        user = self.db.session.scalar(select(self.User).where(self.User.sub == claims["sub"]))
        if user is None:
            user = self.User(sub=claims["sub"])
            self.db.session.add(user)
        user.national_id = claims.get("national_id", user.national_id)
        user.given_name = claims.get("given_name", user.given_name)
        user.family_name = claims.get("family_name", user.family_name)
        user.birthdate = claims.get("birthdate", user.birthdate)
        user.phone_number = claims.get("phone_number", user.phone_number)
        self.db.session.flush()
        return user

    def logout(self) -> Response:
        if not ButtonForm().validate_on_submit():
            abort(400)
        login = self.current_session()
        params: dict[str, str] = {"post_logout_redirect_uri": self.settings.post_logout_redirect_uri}
        if login is not None:
            params["id_token_hint"] = login.id_token
            self.db.session.delete(login)
            self.db.session.commit()
        state = secrets.token_urlsafe(16)
        session.clear()
        session["logout_state"] = state
        params["state"] = state
        end_session = self.client.load_server_metadata()["end_session_endpoint"]
        return redirect(end_session + "?" + urlencode(params))

    def logged_out(self) -> Response:
        expected = session.pop("logout_state", None)
        if expected and secrets.compare_digest(expected, request.args.get("state", "")):
            flash("از حساب خود خارج شدید.", "info")
        return redirect(url_for(self.home_endpoint))

    def backchannel_logout(self) -> Response:
        """Back-Channel Logout 1.0 section 2.6: validate the logout token, end the sessions it names."""
        claims = self._validate_logout_token(request.form.get("logout_token", ""))
        if claims is None:
            return Response('{"error":"invalid_request"}', 400, mimetype="application/json", headers=_NO_STORE)
        # A sid ends the sessions of that provider session; a token with only sub ends all of the user's.
        ended = self.Session.sid == claims["sid"] if "sid" in claims else self.Session.sub == claims["sub"]
        self.db.session.execute(delete(self.Session).where(ended))
        self.db.session.commit()
        return Response("", 200, headers=_NO_STORE)

    def _validate_logout_token(self, token: str) -> dict[str, Any] | None:
        if not token or len(token) > 8192:
            return None
        try:
            decoded = jwt.decode(token, self._key_set(), algorithms=["RS256", "ES256"])
        except JoseError:
            try:  # perhaps a key made after we fetched the JWKS
                decoded = jwt.decode(token, self._key_set(refresh=True), algorithms=["RS256", "ES256"])
            except JoseError:
                return None
        if decoded.header.get("typ", "logout+jwt") != "logout+jwt":
            return None  # an ID token or access token is never a logout token (section 2.4)
        claims = dict(decoded.claims)
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        now = dt.datetime.now(dt.UTC).timestamp()
        valid = (
            claims.get("iss") == self.settings.issuer
            and self.settings.client_id in audiences
            and isinstance(claims.get("iat"), int)
            and claims["iat"] <= now + 60
            and (not isinstance(claims.get("exp"), int) or claims["exp"] > now - 60)
            and BACKCHANNEL_EVENT in (claims.get("events") or {})
            and ("sid" in claims or "sub" in claims)
            and "nonce" not in claims
        )
        return claims if valid else None

    def _key_set(self, refresh: bool = False) -> KeySet:
        if self._jwks is None or refresh:
            self._jwks = KeySet.import_key_set(self.client.fetch_jwk_set(force=refresh))
        return self._jwks


_NO_STORE = {"Cache-Control": "no-store"}


def _local_path(target: str | None) -> str | None:
    """``next`` only when it is a path on this site (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target if not urlsplit(target).netloc else None
