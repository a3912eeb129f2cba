"""Security headers on every response."""

from __future__ import annotations

from flask import Flask, Response

# No inline script or style anywhere, no framing (clickjacking on the login and consent pages), no plugins.
# No form-action: the consent form's answer is a redirect to the relying party, which form-action would block.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


def install(app: Flask, https: bool) -> None:
    @app.after_request
    def add_security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        # Authorization URLs carry state and codes; never leak them to another site in a Referer.
        headers.setdefault("Referrer-Policy", "no-referrer")
        if response.mimetype == "text/html":
            headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            headers.setdefault("X-Frame-Options", "DENY")
            # Pages carry CSRF tokens and personal data: never keep them in a shared cache or history.
            headers.setdefault("Cache-Control", "no-store")
        if https:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response
