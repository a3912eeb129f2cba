"""OpenID Connect: the protocol endpoints (:mod:`idp.oidc.views`), grants, tokens, claims, and the pieces of
Authlib's server they plug into. Importing the package imports no view, so other layers can use its parts."""
