"""CAPTCHA: digits in a picture (the ``captcha`` package), with a spoken alternative.

Each challenge is a record in the key-value store under a random id, which the browser's session names. The
record holds a keyed hash of the answer, to check it, and the answer sealed under a key derived from
``server.secret_key``, to draw it: a copy of the store (or of its backups) reveals no answer, and the server
secret never lives there. Checking spends the record with one atomic ``consume``, right answer or wrong, so
one answer admits exactly one request across threads, workers and instances; the picture and the sound read
it without spending it. ``captcha.enabled = false`` turns the whole thing off (tests, trusted networks).

The digits avoid look-alikes (no 0, 1 or 7), and the picture is drawn larger and with less noise than the
package's defaults: people must read it at the first try, and a CAPTCHA only has to cost a program more than
a person. ``captcha.demo = true`` writes each answer to the log, for the demo only (refused with an https
issuer).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any

from captcha.audio import AudioCaptcha
from captcha.image import ImageCaptcha
from cryptography.fernet import Fernet, InvalidToken
from flask import Blueprint, Response, abort, session
from PIL.Image import Image
from PIL.ImageFilter import SMOOTH

from .. import clock
from ..provider import current_provider
from ..rules.digits import to_ascii_digits
from ..security import keyed_hash, new_token, sealing_key

#: The digits a challenge is drawn from: 0 (O, 8), 1 and 7 (each other) are left out, being misread most.
ALPHABET = "2345689"
SESSION_KEY = "captcha"
RECORD_PREFIX = "captcha:"
MAX_AGE = 600  # an answer older than this is refused: the page was left open too long
WIDTH, HEIGHT = 300, 100

log = logging.getLogger(__name__)
bp = Blueprint("captcha", __name__)


class LegibleImageCaptcha(ImageCaptcha):
    """The package's picture with larger, less bent and less crowded digits, a few dots and one thin curve.

    Light digits on a dark ground: the package makes a glyph as opaque as its colour is bright, so dark digits
    on a light ground come out faint."""

    character_rotate = (-12, 12)
    character_warp_dx = (0.1, 0.2)
    character_warp_dy = (0.1, 0.2)
    word_space_probability = 0.25
    word_offset_dx = 0.1

    def generate_image(self, chars: str, bg_color: Any = None, fg_color: Any = None) -> Image:
        background = bg_color or _shade(20, 60)
        color = fg_color or (*_shade(215, 255), 255)
        image = self.create_captcha_image(chars, color, background)
        self.create_noise_dots(image, color, width=2, number=10)
        self.create_noise_curve(image, color)
        return image.filter(SMOOTH)


def _shade(low: int, high: int) -> tuple[int, int, int]:
    return tuple(low + secrets.randbelow(high - low + 1) for _ in range(3))  # type: ignore[return-value]


_image = LegibleImageCaptcha(width=WIDTH, height=HEIGHT, font_sizes=(58, 64, 70))
_audio = AudioCaptcha()


def captcha_enabled() -> bool:
    return current_provider().config.captcha.enabled


def _sealer() -> Fernet:
    return sealing_key("hoviyat captcha answers")


def _hash(challenge_id: str, answer: str) -> str:
    # The id is part of the hashed value, so two challenges with the same digits have unrelated records.
    return keyed_hash(f"{challenge_id}:{answer}", "captcha")


def new_challenge() -> str:
    """A fresh challenge for the form about to be shown; returns a value that makes its image URL unique."""
    provider = current_provider()
    settings = provider.config.captcha
    answer = "".join(secrets.choice(ALPHABET) for _ in range(settings.length))
    challenge_id = new_token(16)
    record = {
        "hash": _hash(challenge_id, answer),
        "sealed": _sealer().encrypt(answer.encode()).decode(),
        "at": clock.timestamp(),
    }
    previous = session.get(SESSION_KEY)
    if isinstance(previous, str):
        # Only the newest challenge can be answered; reloading a form must not pile up records.
        provider.store.delete(RECORD_PREFIX + previous)
    provider.store.put(RECORD_PREFIX + challenge_id, record, MAX_AGE)
    session[SESSION_KEY] = challenge_id
    if settings.demo:
        log.warning("captcha.demo is on: the CAPTCHA just shown reads %s", answer)
    return secrets.token_urlsafe(6)


def check_answer(typed: str | None) -> bool:
    """True when ``typed`` answers the current challenge. The challenge is used up either way."""
    if not captcha_enabled():
        return True
    challenge_id = session.pop(SESSION_KEY, None)
    if not isinstance(challenge_id, str):
        return False
    challenge = current_provider().store.consume(RECORD_PREFIX + challenge_id)
    if not challenge or not typed or clock.timestamp() - challenge["at"] > MAX_AGE:
        return False
    typed = to_ascii_digits(typed).strip().replace(" ", "")
    return hmac.compare_digest(_hash(challenge_id, typed), challenge["hash"])


def drawable_answer(challenge_id: str) -> str | None:
    """The answer of a live challenge, unsealed to be drawn or spoken (the challenge is not spent); None when
    there is no such challenge."""
    challenge = current_provider().store.get(RECORD_PREFIX + challenge_id)
    if challenge is None:
        return None
    try:
        return _sealer().decrypt(challenge["sealed"].encode()).decode()
    except InvalidToken:
        return None  # sealed under an earlier server.secret_key: the next form draws a new one


def _current_answer() -> str:
    challenge_id = session.get(SESSION_KEY)
    answer = drawable_answer(challenge_id) if captcha_enabled() and isinstance(challenge_id, str) else None
    if answer is None:
        abort(404)
    return answer


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
