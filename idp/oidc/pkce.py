"""PKCE (RFC 7636) required for every client and every authorization request, ``S256`` only.

Authlib's ``CodeChallenge`` accepts a request without a challenge and defaults to ``plain``; RFC 9700
section 2.1.1 asks for PKCE everywhere and ``plain`` gives no protection when the request leaks.
"""

from __future__ import annotations

import hmac
from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge, create_s256_code_challenge


def _compare_s256(code_verifier: str, code_challenge: str) -> bool:
    return hmac.compare_digest(create_s256_code_challenge(code_verifier), code_challenge)


class RequiredS256CodeChallenge(CodeChallenge):
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]
    CODE_CHALLENGE_METHODS: ClassVar[dict[str, Any]] = {"S256": _compare_s256}

    def __init__(self) -> None:
        super().__init__(required=True)

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send 'code_challenge' with 'code_challenge_method=S256'.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("The 'code_challenge_method' must be S256; 'plain' is not accepted.")
        super().validate_code_challenge(grant, redirect_uri)
