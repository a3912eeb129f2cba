// A relying party written with panva's openid-client v6, unchanged: it logs in at Hoviyat with a pushed
// authorization request, DPoP and private_key_jwt, then reads userinfo and refreshes, all with DPoP.
// tests/test_openid_client.py runs it from a temporary folder where openid-client is installed, and plays the
// person's browser: this script prints the URL to send the browser to, and reads the callback URL on stdin.
//
// Environment: ISSUER, CLIENT_ID, CLIENT_KEY (the client's private JWK, JSON), REDIRECT_URI, SCOPE.
import * as readline from "node:readline/promises";
import * as client from "openid-client";

const { ISSUER, CLIENT_ID, CLIENT_KEY, REDIRECT_URI, SCOPE } = process.env;
const jwk = JSON.parse(CLIENT_KEY);
const key = await crypto.subtle.importKey("jwk", jwk, { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);

const config = await client.discovery(
  new URL(ISSUER),
  CLIENT_ID,
  { id_token_signed_response_alg: "ES256" },
  client.PrivateKeyJwt({ key, kid: jwk.kid }),
  { execute: [client.allowInsecureRequests] }, // the test's issuer is http on a loopback address
);
const DPoP = client.getDPoPHandle(config, await client.randomDPoPKeyPair("ES256"));

const codeVerifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const nonce = client.randomNonce();
const authorizationUrl = await client.buildAuthorizationUrlWithPAR(
  config,
  {
    redirect_uri: REDIRECT_URI,
    scope: SCOPE,
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: "S256",
    state,
    nonce,
  },
  { DPoP },
);
console.log(JSON.stringify({ authorization_url: authorizationUrl.href }));

const lines = readline.createInterface({ input: process.stdin });
const callback = (await lines[Symbol.asyncIterator]().next()).value;
lines.close();

const tokens = await client.authorizationCodeGrant(
  config,
  new URL(callback),
  { pkceCodeVerifier: codeVerifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true },
  undefined,
  { DPoP },
);
const claims = tokens.claims();
const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub, { DPoP });
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP });
console.log(
  JSON.stringify({
    token_type: tokens.token_type,
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token,
    id_token_claims: claims,
    userinfo,
    refreshed_token_type: refreshed.token_type,
    refreshed_access_token: refreshed.access_token,
    refreshed_refresh_token: refreshed.refresh_token,
  }),
);
