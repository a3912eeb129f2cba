// node-oidc-provider configured like the Hoviyat bench instance, for `python -m bench`: one confidential
// client (client_secret_basic) with client_credentials, authorization_code (PKCE S256) and refresh_token
// grants, rotating refresh tokens, opaque access tokens (the library's default without resource indicators),
// introspection and revocation on, DPoP (RFC 9449) on, RS256 and ES256 signing keys, the in-memory adapter,
// devInteractions for the login and consent pages. One node process; the bench pins it to one core with taskset.
//
// Run from a folder where `oidc-provider` is installed (the bench installs it into a temporary folder):
//   PORT=5700 CLIENT_ID=c CLIENT_SECRET=s REDIRECT_URI=http://127.0.0.1:9/callback node server.mjs
import { generateKeyPairSync, randomBytes } from "node:crypto";
import Provider from "oidc-provider";

const port = Number(process.env.PORT || 5700);
const issuer = `http://127.0.0.1:${port}`;

const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" });
const ec = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" });

const configuration = {
  clients: [
    {
      client_id: process.env.CLIENT_ID,
      client_secret: process.env.CLIENT_SECRET,
      token_endpoint_auth_method: "client_secret_basic",
      grant_types: ["client_credentials", "authorization_code", "refresh_token"],
      response_types: ["code"],
      redirect_uris: [process.env.REDIRECT_URI],
      scope: "openid profile offline_access",
    },
  ],
  jwks: {
    keys: [
      { ...rsa, kid: "rs256", alg: "RS256", use: "sig" },
      { ...ec, kid: "es256", alg: "ES256", use: "sig" },
    ],
  },
  cookies: { keys: [randomBytes(32).toString("hex")] },
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    // Proofs at the token endpoint bind the access token; userinfo then takes Authorization: DPoP with a proof.
    dPoP: { enabled: true },
    devInteractions: { enabled: true },
  },
  pkce: { required: () => true },
  rotateRefreshToken: true,
  scopes: ["openid", "profile", "offline_access"],
  claims: { openid: ["sub"], profile: ["name", "given_name", "family_name"] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: `Bench ${id}`, given_name: "Bench", family_name: id };
      },
    };
  },
};

const provider = new Provider(issuer, configuration);
provider.on("server_error", (ctx, err) => console.error("server_error", err));
provider.listen(port, "127.0.0.1", () => console.log(`oidc-provider at ${issuer}`));
