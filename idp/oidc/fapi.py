"""Security profiles of clients: the standard one (the code flow with PKCE the README describes) and the FAPI 2.0
Security Profile (``idp clients create --profile fapi2``), whose rules for one client are all read from here.

FAPI 2.0 Security Profile, section 5.3.2: confidential clients only, authenticated by ``private_key_jwt`` whose
``aud`` is the issuer alone; pushed authorization requests only (RFC 9126); PKCE with S256 (every client here);
sender-constrained access tokens (DPoP, RFC 9449); authorization codes that live 60 seconds at most; no refresh
token rotation (section 5.3.2.1: a lost answer must not cost the client its grant); section 5.4: PS256 or ES256.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config
from ..store.models import Client

STANDARD = "standard"
FAPI2 = "fapi2"
PROFILES = (STANDARD, FAPI2)

#: The JWS algorithms FAPI 2.0 allows (section 5.4.1) that this provider can verify and sign with.
FAPI2_ALGORITHMS = ("PS256", "ES256")
#: What clients may sign with (client assertions, request objects, DPoP proofs): asymmetric algorithms only.
CLIENT_ALGORITHMS = ("RS256", "PS256", "ES256")
#: FAPI 2.0 section 5.3.2.1: "shall issue authorization codes with a maximum lifetime of 60 seconds".
FAPI2_CODE_TTL = 60
#: How far in the future a FAPI 2.0 client's assertion may expire: its libraries sign for a minute or so.
FAPI2_ASSERTION_LIFETIME = 300
#: Common client libraries (Authlib's among them) sign assertions for an hour by default.
STANDARD_ASSERTION_LIFETIME = 3600


@dataclass(frozen=True)
class ClientProfile:
    """What a client's profile and registration demand of its requests."""

    name: str
    #: Authorization requests only by reference to a pushed one (RFC 9126 section 6).
    requires_par: bool
    #: A DPoP proof with every token request, so every access token is DPoP-bound (RFC 9449 section 5.2).
    requires_dpop: bool
    #: Algorithms accepted from the client: client assertions, request objects and DPoP proofs.
    client_algorithms: tuple[str, ...]
    #: Algorithms its tokens may be signed with.
    signing_algorithms: tuple[str, ...]
    #: A client assertion's ``aud`` must be the issuer, as a string (FAPI 2.0 section 5.3.2.1).
    assertion_audience_is_issuer: bool
    #: How far ahead of now a client assertion may expire, in seconds.
    assertion_lifetime: int
    #: A refresh token is exchanged for a new one at each use (RFC 9700 section 4.14.2).
    rotates_refresh_tokens: bool

    @property
    def is_fapi2(self) -> bool:
        return self.name == FAPI2

    def code_ttl(self, configured: int) -> int:
        return min(configured, FAPI2_CODE_TTL) if self.is_fapi2 else configured

    def access_token_alg(self, configured: str) -> str:
        return configured if configured in self.signing_algorithms else self.signing_algorithms[-1]

    def request_object_algorithms(self, client: Client) -> list[str]:
        if client.request_object_signing_alg:
            return [client.request_object_signing_alg]
        return list(self.client_algorithms)


def profile_of(client: Client, config: Config) -> ClientProfile:
    """The rules for ``client``: its profile's, with what its registration and the configuration add."""
    if client.profile == FAPI2:
        return ClientProfile(
            name=FAPI2,
            requires_par=True,
            requires_dpop=True,
            client_algorithms=FAPI2_ALGORITHMS,
            signing_algorithms=FAPI2_ALGORITHMS,
            assertion_audience_is_issuer=True,
            assertion_lifetime=FAPI2_ASSERTION_LIFETIME,
            rotates_refresh_tokens=False,
        )
    return ClientProfile(
        name=STANDARD,
        requires_par=bool(client.require_par) or config.oauth.require_par,
        requires_dpop=bool(client.dpop_bound),
        client_algorithms=CLIENT_ALGORITHMS,
        signing_algorithms=CLIENT_ALGORITHMS,
        assertion_audience_is_issuer=False,
        assertion_lifetime=STANDARD_ASSERTION_LIFETIME,
        rotates_refresh_tokens=True,
    )


def client_profile(client: Client) -> ClientProfile:
    """:func:`profile_of` under the running provider's configuration."""
    from ..provider import current_provider

    return profile_of(client, current_provider().config)
