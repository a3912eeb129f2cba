"""CAPTCHA: digits in a distorted image (the ``captcha`` package), with a spoken alternative.

The answer lives in the server-side session, never in the page; each answer can be checked once, and the
next form shows a new one. ``captcha.enabled = false`` turns the whole thing off (tests, trusted networks).
"""

from __future__ import annotations

import hmac
import secrets

from captcha.audio import AudioCaptcha
from captcha.image import ImageCaptcha
from flask import Blueprint, Response, abort, session

from .. import clock
from ..provider import current_provider
from ..rules.digits import to_ascii_digits

SESSION_KEY = "captcha"
MAX_AGE = 600  # an answer older than this is refused: the page was left open too long

bp = Blueprint("captcha", __name__)
_image = ImageCaptcha(width=200, height=70)
_audio = AudioCaptcha()


def captcha_enabled() -> bool:
    return current_provider().config.captcha.enabled


def new_challenge() -> str:
    """A fresh challenge for the form about to be shown; returns a value that makes its image URL unique."""
    length = current_provider().config.captcha.length
    answer = "".join(str(secrets.randbelow(10)) for _ in range(length))
    nonce = secrets.token_urlsafe(6)
    session[SESSION_KEY] = {"answer": answer, "at": clock.timestamp(), "nonce": nonce}
    return nonce


def check_answer(typed: str | None) -> bool:
    """True when ``typed`` answers the current challenge. The challenge is used up either way."""
    if not captcha_enabled():
        return True
    challenge = session.pop(SESSION_KEY, None)
    if not challenge or not typed or clock.timestamp() - challenge["at"] > MAX_AGE:
        return False
    typed = to_ascii_digits(typed).strip().replace(" ", "")
    return hmac.compare_digest(typed.encode(), challenge["answer"].encode())


def _current_answer() -> str:
    challenge = session.get(SESSION_KEY)
    if not challenge or not captcha_enabled():
        abort(404)
    return challenge["answer"]


# Forms showing a CAPTCHA make a new challenge as they are drawn (see templates/_macros.html); a global, so
# imported macros see it too.
bp.add_app_template_global(new_challenge, "new_captcha")


@bp.get("/captcha.png")
def image() -> Response:
    data = _image.generate(_current_answer()).getvalue()
    return Response(data, mimetype="image/png", headers={"Cache-Control": "no-store"})


@bp.get("/captcha.wav")
def audio() -> Response:
    data = bytes(_audio.generate(_current_answer()))
    return Response(data, mimetype="audio/wav", headers={"Cache-Control": "no-store"})
