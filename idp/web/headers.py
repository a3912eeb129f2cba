"""Security headers on every response."""

from __future__ import annotations

from flask import Flask, Response

# No inline script or style anywhere, no framing (clickjacking on the login and consent pages), no plugins.
# No form-action: the consent form's answer is a redirect to the relying party, which form-action would block.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


#: On every response. Authorization URLs carry state and codes: never leak them to another site in a Referer.
EVERY_RESPONSE = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"))
#: On pages as well. Pages carry CSRF tokens and personal data: never keep them in a shared cache or history.
PAGES = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
)
HTTPS = (("Strict-Transport-Security", "max-age=31536000"),)


def install(app: Flask, https: bool) -> None:
    @app.after_request
    def add_security_headers(response: Response) -> Response:
        # Each header only where the view did not set its own; the names present are read once rather than the
        # header list searched once per header.
        headers = response.headers
        present = {name.lower() for name, _ in headers.to_wsgi_list()}
        wanted = EVERY_RESPONSE
        if headers.get("Content-Type", "").partition(";")[0].strip().lower() == "text/html":
            wanted += PAGES
        if https:
            wanted += HTTPS
        for name, value in wanted:
            if name.lower() not in present:
                headers.add(name, value)
        return response
