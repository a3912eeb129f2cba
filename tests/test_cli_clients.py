"""``idp clients``: registering relying parties from the command line, and what the registration does at the
protocol endpoints (secrets stored hashed, rotated, deleted clients' tokens dead, audit trail without secrets)."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from idp.extensions import db
from idp.store.models import Client

from .helpers import REDIRECT_URI, Browser, ClientInfo, exchange_code, get_code

OTHER_URI = "https://rp.example/other"


def cli(runner: Any, *args: str) -> Any:
    return runner.invoke(args=list(args))


def cli_json(runner: Any, *args: str) -> Any:
    result = cli(runner, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def create(runner: Any, *extra: str, name: str = "Portal") -> dict[str, Any]:
    args = ["clients", "create", "--name", name, *extra]
    if not any(a.startswith("--redirect-uri") or a == "--grant-type" for a in extra):
        args += ["--redirect-uri", REDIRECT_URI]
    if "--scope" not in extra:
        args += ["--scope", "openid profile"]
    return cli_json(runner, *args)


def stored(app: Any, client_id: str) -> Client | None:
    with app.app_context():
        row = db.session.get(Client, client_id)
        if row is not None:
            db.session.expunge(row)
        return row


def client_credentials(client: Any, client_id: str, secret: str) -> Any:
    return client.post("/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))


def code_flow_tokens(client: Any, issuer: str, info: ClientInfo, user: Any) -> dict[str, Any]:
    browser = Browser(client, issuer)
    code, verifier, _ = get_code(browser, info, user)
    response = exchange_code(client, info, code, verifier)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def public_jwk_file(tmp_path: Path, private: bool = False) -> tuple[Path, ECKey]:
    key = ECKey.generate_key("P-256", private=True)
    jwk = key.as_dict(private=private) | {"kid": "rp-1", "alg": "ES256", "use": "sig"}
    path = tmp_path / ("private.jwks" if private else "public.jwks")
    path.write_text(json.dumps({"keys": [jwk]}))
    return path, key


# -- create --------------------------------------------------------------------------------------------


def test_create_prints_id_and_secret_that_works_and_is_stored_hashed(app, client, runner, issuer, user):
    data = create(runner, "--redirect-uri", REDIRECT_URI, "--scope", "openid profile")
    assert data["client_id"] and data["client_secret"]
    assert data["redirect_uris"] == [REDIRECT_URI]
    assert data["scope"] == "openid profile"
    assert data["token_endpoint_auth_method"] == "client_secret_basic"

    row = stored(app, data["client_id"])
    assert row is not None
    assert row.client_secret_hash != data["client_secret"]
    assert row.client_secret_hash == hashlib.sha256(data["client_secret"].encode()).hexdigest()
    assert row.check_client_secret(data["client_secret"])
    assert not row.check_client_secret(data["client_secret"] + "x")

    info = ClientInfo(data["client_id"], data["client_secret"])
    tokens = code_flow_tokens(client, issuer, info, user)
    assert tokens["id_token"] and tokens["access_token"]
    wrong = ClientInfo(data["client_id"], "not-the-secret")
    browser = Browser(client, issuer)
    code, verifier, _ = get_code(browser, info, user)
    assert exchange_code(client, wrong, code, verifier).status_code == 401


def test_create_text_output_shows_secret_once(runner):
    result = cli(runner, "clients", "create", "--name", "Text", "--redirect-uri", REDIRECT_URI, "--scope", "openid")
    assert result.exit_code == 0, result.output
    assert "client_secret:" in result.stdout
    client_id = next(line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("client_id:"))
    secret = next(line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("client_secret:"))
    shown = cli(runner, "clients", "show", client_id)
    assert shown.exit_code == 0
    assert secret not in shown.output
    assert "client_secret:" not in shown.output


def test_client_credentials_client_secret_works_at_token_endpoint(client, runner):
    data = create(runner, "--grant-type", "client_credentials", "--scope", "api.read")
    assert data["grant_types"] == ["client_credentials"]
    good = client_credentials(client, data["client_id"], data["client_secret"])
    assert good.status_code == 200, good.get_json()
    assert good.get_json()["scope"] == "api.read"
    bad = client_credentials(client, data["client_id"], data["client_secret"][:-2])
    assert bad.status_code == 401
    assert bad.get_json()["error"] == "invalid_client"


def test_public_client_has_no_secret(app, runner, client, issuer, user):
    data = create(runner, "--auth-method", "none")
    assert data["client_secret"] is None
    assert data["token_endpoint_auth_method"] == "none"
    assert stored(app, data["client_id"]).client_secret_hash is None
    tokens = code_flow_tokens(client, issuer, ClientInfo(data["client_id"], None), user)
    assert tokens["access_token"]


def test_private_key_jwt_client_with_jwks_file(app, client, runner, tmp_path):
    path, key = public_jwk_file(tmp_path)
    data = create(
        runner,
        "--auth-method",
        "private_key_jwt",
        "--jwks",
        str(path),
        "--grant-type",
        "client_credentials",
        "--scope",
        "api.read",
    )
    assert data["client_secret"] is None
    assert data["has_jwks"] is True
    assert stored(app, data["client_id"]).jwks["keys"][0]["kid"] == "rp-1"

    now = int(time.time())
    assertion = jwt.encode(
        {"alg": "ES256", "kid": "rp-1"},
        {
            "iss": data["client_id"],
            "sub": data["client_id"],
            "aud": app.extensions["idp"].issuer + "/token",
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + 60,
        },
        key,
    )
    response = client.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": data["client_id"],
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )
    assert response.status_code == 200, response.get_json()


def test_jwks_file_with_private_key_is_refused(runner, tmp_path):
    path, _ = public_jwk_file(tmp_path, private=True)
    result = cli(
        runner,
        "clients",
        "create",
        "--name",
        "Leaky",
        "--redirect-uri",
        REDIRECT_URI,
        "--scope",
        "openid",
        "--auth-method",
        "private_key_jwt",
        "--jwks",
        str(path),
    )
    assert result.exit_code != 0
    assert "--jwks" in result.output
    assert cli_json(runner, "clients", "list") == []


def test_private_key_jwt_without_keys_is_refused(runner):
    result = cli(
        runner,
        "clients",
        "create",
        "--name",
        "Keyless",
        "--redirect-uri",
        REDIRECT_URI,
        "--scope",
        "openid",
        "--auth-method",
        "private_key_jwt",
    )
    assert result.exit_code != 0
    assert "--jwks" in result.output or "--auth-method" in result.output
    assert cli_json(runner, "clients", "list") == []


# -- high assurance (README, "High assurance (FAPI 2.0)") -----------------------------------------------------


def test_create_a_fapi2_client(app, runner, tmp_path):
    path, _ = public_jwk_file(tmp_path)
    data = create(runner, "--profile", "fapi2", "--auth-method", "private_key_jwt", "--jwks", str(path))
    assert data["profile"] == "fapi2"
    assert data["client_secret"] is None
    assert data["require_par"] is True and data["dpop_bound"] is True
    assert data["token_endpoint_auth_method"] == "private_key_jwt"
    assert data["id_token_signed_response_alg"] == "ES256"
    assert cli_json(runner, "clients", "show", data["client_id"])["profile"] == "fapi2"
    # Back to the standard profile: what fapi2 implied goes with it.
    updated = cli_json(runner, "clients", "update", data["client_id"], "--profile", "standard")
    assert updated["profile"] == "standard" and updated["require_par"] is False and updated["dpop_bound"] is False


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        ([], "--auth-method"),
        (["--auth-method", "private_key_jwt", "--id-token-alg", "RS256"], "--id-token-alg"),
        (["--auth-method", "private_key_jwt", "--request-object-alg", "RS256"], "--request-object-alg"),
        (["--auth-method", "private_key_jwt", "--no-require-par"], "--require-par"),
        (["--auth-method", "private_key_jwt", "--no-dpop-bound"], "--dpop-bound"),
    ],
    ids=["client-secret", "rs256-id-token", "rs256-request-objects", "without-par", "bearer-tokens"],
)
def test_a_fapi2_client_that_breaks_the_profile_is_refused(runner, tmp_path, extra, option):
    path, _ = public_jwk_file(tmp_path)
    args = ["clients", "create", "--name", "Bank", "--redirect-uri", REDIRECT_URI, "--scope", "openid"]
    result = cli(runner, *args, "--profile", "fapi2", "--jwks", str(path), *extra)
    assert result.exit_code != 0
    assert option in result.output, result.output
    assert cli_json(runner, "clients", "list") == []


def test_create_with_par_dpop_request_object_alg_and_resources(runner, tmp_path):
    path, _ = public_jwk_file(tmp_path)
    data = create(
        runner, "--require-par", "--dpop-bound", "--request-object-alg", "PS256", "--jwks", str(path),
        "--auth-method", "private_key_jwt", "--resource", "https://api.example/v1", "--resource",
        "https://files.example/",
    )  # fmt: skip
    assert data["profile"] == "standard"
    assert data["require_par"] is True and data["dpop_bound"] is True
    assert data["request_object_signing_alg"] == "PS256"
    assert data["resources"] == ["https://api.example/v1", "https://files.example/"]
    result = cli(runner, "clients", "create", "--name", "X", "--redirect-uri", REDIRECT_URI, "--resource", "ftp://x")
    assert result.exit_code != 0 and "--resource" in result.output


BASE = ["--name", "Bad"]


@pytest.mark.parametrize(
    ("args", "options"),
    [
        pytest.param(
            ["--redirect-uri", "http://rp.example/callback", "--scope", "openid"], ("--redirect-uri",), id="http"
        ),
        pytest.param(
            ["--redirect-uri", "https://rp.example/callback#frag", "--scope", "openid"],
            ("--redirect-uri",),
            id="fragment",
        ),
        pytest.param(["--redirect-uri", "/callback", "--scope", "openid"], ("--redirect-uri",), id="relative"),
        pytest.param(["--scope", "openid"], ("--redirect-uri",), id="no-redirect-for-code"),
        pytest.param(["--redirect-uri", REDIRECT_URI, "--scope", "profile"], ("--scope",), id="no-openid"),
        pytest.param(
            ["--grant-type", "client_credentials", "--auth-method", "none", "--scope", "api"],
            ("--grant-type", "--auth-method"),
            id="client-credentials-public",
        ),
        pytest.param(
            ["--grant-type", "refresh_token", "--redirect-uri", REDIRECT_URI, "--scope", "openid"],
            ("--grant-type",),
            id="refresh-without-code",
        ),
        pytest.param(
            ["--grant-type", "implicit", "--redirect-uri", REDIRECT_URI, "--scope", "openid"],
            ("--grant-type",),
            id="unknown-grant",
        ),
        pytest.param(
            [
                "--post-logout-redirect-uri",
                "http://rp.example/bye",
                "--redirect-uri",
                REDIRECT_URI,
                "--scope",
                "openid",
            ],
            ("--post-logout-redirect-uri",),
            id="http-post-logout",
        ),
    ],
)
def test_create_validation_errors_name_the_option(runner, args, options):
    result = cli(runner, "clients", "create", *BASE, *args)
    assert result.exit_code != 0
    assert any(option in result.output for option in options), result.output
    assert cli_json(runner, "clients", "list") == []


def test_http_redirect_on_loopback_is_allowed(runner):
    data = create(runner, "--redirect-uri", "http://127.0.0.1:8765/callback", "--redirect-uri", "http://localhost/cb")
    assert data["redirect_uris"] == ["http://127.0.0.1:8765/callback", "http://localhost/cb"]


# -- list, show, update ----------------------------------------------------------------------------------


def test_list_and_show(runner):
    first = create(runner, name="First Portal")
    second = create(runner, "--auth-method", "client_secret_post", name="Second Portal")

    rows = cli_json(runner, "clients", "list")
    assert sorted(r["client_id"] for r in rows) == sorted([first["client_id"], second["client_id"]])
    assert all("client_secret" not in r for r in rows)
    text = cli(runner, "clients", "list")
    assert text.exit_code == 0
    assert first["client_id"] in text.output and "Second Portal" in text.output
    assert "client_secret_post" in text.output
    assert first["client_secret"] not in text.output

    shown = cli_json(runner, "clients", "show", second["client_id"])
    assert shown["name"] == "Second Portal"
    assert shown["token_endpoint_auth_method"] == "client_secret_post"
    assert "client_secret" not in shown
    text = cli(runner, "clients", "show", second["client_id"])
    assert text.exit_code == 0
    assert "Second Portal" in text.output and REDIRECT_URI in text.output

    missing = cli(runner, "clients", "show", "no-such-client")
    assert missing.exit_code != 0


def test_list_without_clients(runner):
    assert cli_json(runner, "clients", "list") == []
    assert cli(runner, "clients", "list").exit_code == 0


def test_update_changes_only_given_fields(app, runner):
    data = create(
        runner,
        "--redirect-uri",
        REDIRECT_URI,
        "--redirect-uri",
        OTHER_URI,
        "--post-logout-redirect-uri",
        "https://rp.example/bye",
        "--scope",
        "openid profile",
    )
    client_id = data["client_id"]
    before = cli_json(runner, "clients", "show", client_id)
    hash_before = stored(app, client_id).client_secret_hash

    updated = cli_json(runner, "clients", "update", client_id, "--name", "Renamed")
    assert updated["name"] == "Renamed"
    for key in ("redirect_uris", "post_logout_redirect_uris", "scope", "grant_types", "token_endpoint_auth_method"):
        assert updated[key] == before[key], key
    assert updated["trusted"] is False
    assert stored(app, client_id).client_secret_hash == hash_before  # the secret keeps working
    assert "client_secret" not in updated

    updated = cli_json(runner, "clients", "update", client_id, "--redirect-uri", "https://rp.example/new")
    assert updated["redirect_uris"] == ["https://rp.example/new"]  # lists are replaced, not appended to
    assert updated["post_logout_redirect_uris"] == ["https://rp.example/bye"]
    assert updated["name"] == "Renamed"

    updated = cli_json(runner, "clients", "update", client_id, "--scope", "openid profile phone")
    assert updated["scope"] == "openid profile phone"
    assert updated["redirect_uris"] == ["https://rp.example/new"]

    assert cli_json(runner, "clients", "update", client_id, "--trusted")["trusted"] is True
    assert cli_json(runner, "clients", "show", client_id)["trusted"] is True
    assert cli_json(runner, "clients", "update", client_id, "--not-trusted")["trusted"] is False
    assert cli_json(runner, "clients", "show", client_id)["name"] == "Renamed"


def test_update_validates_and_keeps_old_values(runner):
    data = create(runner)
    result = cli(runner, "clients", "update", data["client_id"], "--redirect-uri", "http://evil.example/cb")
    assert result.exit_code != 0
    assert "--redirect-uri" in result.output
    assert cli_json(runner, "clients", "show", data["client_id"])["redirect_uris"] == [REDIRECT_URI]
    assert cli(runner, "clients", "update", "no-such-client", "--name", "X").exit_code != 0


def test_trusted_client_skips_consent(client, runner, issuer, user):
    data = create(runner, "--trusted")
    browser = Browser(client, issuer)
    page = browser.authorize(
        {
            "response_type": "code",
            "client_id": data["client_id"],
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile",
            "state": "s",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        }
    )
    page = browser.login(page, user)
    assert page.status_code in {302, 303}
    assert page.location.startswith(REDIRECT_URI)


# -- rotate-secret, delete ---------------------------------------------------------------------------


def test_rotate_secret_old_stops_new_works(app, client, runner):
    data = create(runner, "--grant-type", "client_credentials", "--scope", "api.read")
    old = data["client_secret"]
    assert client_credentials(client, data["client_id"], old).status_code == 200

    rotated = cli_json(runner, "clients", "rotate-secret", data["client_id"])
    new = rotated["client_secret"]
    assert rotated["client_id"] == data["client_id"]
    assert new and new != old
    assert client_credentials(client, data["client_id"], old).status_code == 401
    assert client_credentials(client, data["client_id"], new).status_code == 200
    assert stored(app, data["client_id"]).client_secret_hash == hashlib.sha256(new.encode()).hexdigest()


def test_rotate_secret_of_public_client_is_refused(runner):
    data = create(runner, "--auth-method", "none")
    result = cli(runner, "clients", "rotate-secret", data["client_id"])
    assert result.exit_code != 0
    assert cli_json(runner, "clients", "show", data["client_id"])["token_endpoint_auth_method"] == "none"


def test_delete_removes_client_and_its_tokens_stop_working(app, client, runner, issuer, user):
    data = create(runner)
    tokens = code_flow_tokens(client, issuer, ClientInfo(data["client_id"], data["client_secret"]), user)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/userinfo", headers=bearer).status_code == 200

    result = cli(runner, "clients", "delete", data["client_id"], "--yes")
    assert result.exit_code == 0, result.output
    assert stored(app, data["client_id"]) is None
    assert cli(runner, "clients", "show", data["client_id"]).exit_code != 0
    assert cli_json(runner, "clients", "list") == []

    assert client.get("/userinfo", headers=bearer).status_code == 401
    refresh = client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(data["client_id"], data["client_secret"]),
    )
    assert refresh.status_code == 401


def test_delete_asks_for_confirmation(app, runner):
    data = create(runner)
    result = runner.invoke(args=["clients", "delete", data["client_id"]], input="n\n")
    assert result.exit_code != 0
    assert stored(app, data["client_id"]) is not None
    assert cli(runner, "clients", "delete", "no-such-client", "--yes").exit_code != 0


# -- audit ---------------------------------------------------------------------------------------------


def test_admin_changes_are_audited_without_secrets(runner):
    data = create(runner)
    client_id = data["client_id"]
    assert cli(runner, "clients", "update", client_id, "--name", "New name").exit_code == 0
    rotated = cli_json(runner, "clients", "rotate-secret", client_id)
    assert cli(runner, "clients", "delete", client_id, "--yes").exit_code == 0

    events = cli_json(runner, "audit", "list")
    names = [e["event"] for e in events if e["client_id"] == client_id]
    for expected in ("client.created", "client.updated", "client.secret_rotated", "client.deleted"):
        assert expected in names, names

    text = cli(runner, "audit", "list")
    assert text.exit_code == 0
    for secret in (data["client_secret"], rotated["client_secret"]):
        assert secret not in json.dumps(events)
        assert secret not in text.output
        assert hashlib.sha256(secret.encode()).hexdigest() not in json.dumps(events)

    only = cli_json(runner, "audit", "list", "--event", "client.created")
    assert [e["event"] for e in only] == ["client.created"]
