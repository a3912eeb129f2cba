"""Pushed authorization requests kept for the browser's visit (RFC 9126): stored by the pushed authorization
request endpoint (:mod:`.endpoints.par`) under a ``request_uri``, taken once by the authorization endpoint."""

from __future__ import annotations

from authlib.oauth2.rfc9101.errors import InvalidRequestUriError
from werkzeug.datastructures import MultiDict

from .. import clock
from ..provider import current_provider
from ..security import new_token, sha256_hex
from ..store.models import Client

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
#: Section 2.2: "short lived"; FAPI 2.0 asks for under 600 s. A minute is enough to send a browser on.
REQUEST_URI_TTL = 60
PUSHED_KEY = "pushed-authorization-request:"


def keep_pushed_request(client: Client, params: MultiDict[str, str]) -> str:
    """Keep ``params`` for :data:`REQUEST_URI_TTL` seconds; returns the ``request_uri`` that names them."""
    reference = new_token(32)
    record = {
        "client_id": client.client_id,
        "params": list(params.items(multi=True)),
        "expires_at": clock.timestamp() + REQUEST_URI_TTL,
    }
    # The store's TTL only collects garbage; expires_at is what counts (and what tests move past).
    current_provider().store.put(PUSHED_KEY + sha256_hex(reference), record, REQUEST_URI_TTL + 5)
    return REQUEST_URI_PREFIX + reference


def take_pushed_request(request_uri: str, client: Client) -> MultiDict[str, str]:
    """The parameters pushed under ``request_uri`` by ``client``, taken from the store: a request_uri works once,
    before it expires, and only for the client that pushed it (another client's attempt does not spend it)."""
    if not request_uri.startswith(REQUEST_URI_PREFIX) or len(request_uri) > 200:
        raise InvalidRequestUriError("The request_uri is not one this server issued.")
    store = current_provider().store
    key = PUSHED_KEY + sha256_hex(request_uri[len(REQUEST_URI_PREFIX) :])
    record = store.get(key)
    if record is None:
        raise InvalidRequestUriError("The request_uri is unknown, expired or used already.")
    if record["client_id"] != client.client_id:
        raise InvalidRequestUriError("The request_uri was pushed by another client.")
    record = store.consume(key)
    if record is None:  # a concurrent request took it first
        raise InvalidRequestUriError("The request_uri is unknown, expired or used already.")
    if record["expires_at"] <= clock.timestamp():
        raise InvalidRequestUriError("The request_uri has expired.")
    return MultiDict([tuple(pair) for pair in record["params"]])
