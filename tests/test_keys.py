"""Signing keys: RFC 7638 kids, private keys kept private, rotation without breaking issued tokens, retirement."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, import_key

from idp import clock
from idp.extensions import db
from idp.store.models import SigningKey

from .helpers import Browser, exchange_code, get_code

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def keys_cli(runner: Any, *args: str) -> Any:
    result = runner.invoke(args=["keys", *args])
    assert result.exit_code == 0, result.output
    return result


def key_rows(runner: Any) -> list[dict[str, Any]]:
    return json.loads(keys_cli(runner, "list", "--json").stdout)


def active(runner: Any) -> dict[str, str]:
    return {r["alg"]: r["kid"] for r in key_rows(runner) if r["status"] == "active"}


def keys_dir(app: Any) -> Path:
    return Path(app.extensions["idp"].config.keys.dir)


def fetch_jwks(client: Any) -> dict[str, Any]:
    response = client.get("/jwks.json")
    assert response.status_code == 200
    return response.get_json()


def tokens_for(client: Any, issuer: str, rp: Any, user: Any) -> dict[str, Any]:
    browser = Browser(client, issuer)
    code, verifier, _ = get_code(browser, rp, user)
    response = exchange_code(client, rp, code, verifier)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def verify(token: str, jwks: dict[str, Any]) -> jwt.Token:
    return jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["RS256", "PS256", "ES256"])


def unverified_header(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def test_list_shows_active_rs256_ps256_and_es256(runner):
    rows = key_rows(runner)
    assert sorted((r["alg"], r["status"]) for r in rows) == [
        ("ES256", "active"),
        ("PS256", "active"),
        ("RS256", "active"),
    ]
    text = keys_cli(runner, "list").output
    for row in rows:
        assert row["kid"] in text
    assert "RS256" in text and "PS256" in text and "ES256" in text and "active" in text


def test_kid_is_rfc7638_thumbprint_of_public_key(app, client, runner):
    jwks = fetch_jwks(client)
    published = {k["kid"]: k for k in jwks["keys"]}
    assert set(published) == set(active(runner).values())
    for kid, jwk in published.items():
        public = {name: value for name, value in jwk.items() if name not in {"kid", "alg", "use"}}
        assert import_key(public).thumbprint() == kid
        pem = (keys_dir(app) / f"{kid}.pem").read_bytes()
        assert import_key(pem, jwk["kty"]).thumbprint() == kid
        assert jwk["use"] == "sig"
        assert jwk["alg"] in {"RS256", "PS256", "ES256"}
        assert jwk["kty"] == {"RS256": "RSA", "PS256": "RSA", "ES256": "EC"}[jwk["alg"]]


def test_private_keys_are_0600_files_and_never_published(app, client, runner):
    directory = keys_dir(app)
    assert stat.S_IMODE(directory.stat().st_mode) & 0o077 == 0
    for kid in active(runner).values():
        path = directory / f"{kid}.pem"
        assert path.is_file()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert b"PRIVATE KEY" in path.read_bytes()
    for jwk in fetch_jwks(client)["keys"]:
        assert not PRIVATE_MEMBERS & set(jwk), jwk
    keys_cli(runner, "rotate")
    for jwk in fetch_jwks(client)["keys"]:
        assert not PRIVATE_MEMBERS & set(jwk), jwk
    for kid in active(runner).values():
        assert stat.S_IMODE((directory / f"{kid}.pem").stat().st_mode) == 0o600


def test_rotation_keeps_old_tokens_verifiable_and_signs_new_ones_with_new_key(
    app, client, runner, issuer, user, rp_client
):
    old = active(runner)
    before = tokens_for(client, issuer, rp_client, user)
    assert unverified_header(before["id_token"])["kid"] == old["RS256"]
    assert unverified_header(before["access_token"])["kid"] == old["ES256"]

    result = keys_cli(runner, "rotate")
    new = active(runner)
    assert new["RS256"] != old["RS256"] and new["ES256"] != old["ES256"]
    assert new["RS256"] in result.output
    statuses = {r["kid"]: r["status"] for r in key_rows(runner)}
    assert statuses[old["RS256"]] == "published"
    assert statuses[old["ES256"]] == "published"

    jwks = fetch_jwks(client)
    assert {k["kid"] for k in jwks["keys"]} == set(old.values()) | set(new.values())
    # Active keys come first, for relying parties that take the first key of a type.
    assert {k["kid"] for k in jwks["keys"][:3]} == set(new.values())
    claims = verify(before["id_token"], jwks).claims
    assert claims["iss"] == issuer and claims["aud"] == rp_client.client_id
    # The access token issued before still works at userinfo.
    bearer = {"Authorization": f"Bearer {before['access_token']}"}
    assert client.get("/userinfo", headers=bearer).status_code == 200

    after = tokens_for(client, issuer, rp_client, user)
    assert unverified_header(after["id_token"])["kid"] == new["RS256"]
    assert unverified_header(after["access_token"])["kid"] == new["ES256"]
    assert verify(after["id_token"], jwks).claims["sub"] == claims["sub"]
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {after['access_token']}"}).status_code == 200

    # A refresh after the rotation signs with the new key too.
    refreshed = client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": before["refresh_token"]},
        auth=(rp_client.client_id, rp_client.client_secret),
    )
    assert refreshed.status_code == 200, refreshed.get_json()
    assert unverified_header(refreshed.get_json()["id_token"])["kid"] == new["RS256"]


def test_rotate_one_algorithm(runner):
    old = active(runner)
    rows = json.loads(keys_cli(runner, "rotate", "--alg", "ES256", "--json").stdout)
    assert [r["alg"] for r in rows] == ["ES256"]
    new = active(runner)
    assert new["RS256"] == old["RS256"]
    assert new["ES256"] == rows[0]["kid"] != old["ES256"]


def test_retire_removes_key_from_jwks_and_deletes_pem(app, client, runner, issuer, user, rp_client):
    old = active(runner)
    before = tokens_for(client, issuer, rp_client, user)
    # Used once before the retirement: the provider remembers the tokens it verified, and must forget them.
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {before['access_token']}"}).status_code == 200
    keys_cli(runner, "rotate")
    fetch_jwks(client)  # cached by the provider now

    for kid in old.values():
        keys_cli(runner, "retire", "--", kid)
        assert not (keys_dir(app) / f"{kid}.pem").exists()

    jwks = fetch_jwks(client)
    kids = {k["kid"] for k in jwks["keys"]}
    assert kids == set(active(runner).values())
    assert not kids & set(old.values())
    statuses = {r["kid"]: r["status"] for r in key_rows(runner)}
    assert statuses[old["RS256"]] == statuses[old["PS256"]] == statuses[old["ES256"]] == "retired"

    with pytest.raises((JoseError, ValueError)):
        verify(before["id_token"], jwks)
    # Access tokens signed by the retired key are no longer accepted either.
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {before['access_token']}"}).status_code == 401
    # The provider keeps working with its active keys.
    after = tokens_for(client, issuer, rp_client, user)
    verify(after["id_token"], jwks)


def test_retiring_the_active_key_is_refused(app, client, runner):
    kid = active(runner)["RS256"]
    result = runner.invoke(args=["keys", "retire", "--", kid])
    assert result.exit_code != 0
    assert "active" in result.output
    assert (keys_dir(app) / f"{kid}.pem").exists()
    assert kid in {k["kid"] for k in fetch_jwks(client)["keys"]}
    assert active(runner)["RS256"] == kid


def test_retiring_unknown_or_retired_kid_is_an_error(runner):
    result = runner.invoke(args=["keys", "retire", "no-such-kid"])
    assert result.exit_code != 0
    assert "no-such-kid" in result.output

    old = active(runner)["ES256"]
    keys_cli(runner, "rotate", "--alg", "ES256")
    keys_cli(runner, "retire", "--", old)
    again = runner.invoke(args=["keys", "retire", "--", old])
    assert again.exit_code != 0


def test_generate_when_keys_exist_creates_nothing(app, runner):
    rows = key_rows(runner)
    files = sorted(p.name for p in keys_dir(app).iterdir())
    result = keys_cli(runner, "generate")
    assert "exists" in result.output
    assert key_rows(runner) == rows
    assert sorted(p.name for p in keys_dir(app).iterdir()) == files
    assert json.loads(keys_cli(runner, "generate", "--json").stdout) == []


def test_key_operations_are_audited(runner):
    old = active(runner)["ES256"]
    keys_cli(runner, "rotate", "--alg", "ES256")
    keys_cli(runner, "retire", "--", old)
    events = json.loads(runner.invoke(args=["audit", "list", "--json"]).stdout)
    names = {e["event"] for e in events}
    assert {"key.rotated", "key.retired"} <= names
    assert "PRIVATE KEY" not in json.dumps(events)


def test_retire_accepts_a_kid_that_starts_with_a_dash(app, runner):
    # About one kid in 64 starts with "-" (base64url); an admin pastes it as printed, without "--".
    with app.app_context():
        db.session.add(SigningKey(kid="-dash-kid", alg="RS256", status="published", created_at=clock.now()))
        db.session.commit()
    (keys_dir(app) / "-dash-kid.pem").write_text("unused")
    result = runner.invoke(args=["keys", "retire", "-dash-kid"])
    assert result.exit_code == 0, result.output
    assert not (keys_dir(app) / "-dash-kid.pem").exists()
    assert {r["kid"]: r["status"] for r in key_rows(runner)}["-dash-kid"] == "retired"


def test_a_reread_parses_only_the_keys_that_changed_and_keeps_what_it_verified(app, client, runner, monkeypatch):
    """Every keys.reload_interval the keys are re-read from the database; parsing an RSA private key again each
    time stalled every signing and verifying request behind the reload (~40 ms). Unchanged keys keep their parsed
    object, and the memory of verified tokens survives while the published keys stay the same."""
    from idp import keys as key_module
    from idp.oidc.tokens import sign_jwt
    from idp.provider import current_provider

    with app.app_context():
        ring = current_provider().keys
        signing = {alg: ring.signing_key(alg) for alg in ("RS256", "PS256", "ES256")}
        token = sign_jwt({}, {"sub": "x"}, "ES256")
        ring.decode_jwt(token)

        parsed: list[str] = []
        verified: list[str] = []
        load, decode = key_module.KeyRing._load, key_module.jwt.decode
        monkeypatch.setattr(key_module.KeyRing, "_load", lambda self, row: parsed.append(row.kid) or load(self, row))
        monkeypatch.setattr(key_module.jwt, "decode", lambda *a, **k: verified.append("x") or decode(*a, **k))

        ring.invalidate()
        assert {alg: ring.signing_key(alg) for alg in signing} == signing  # the same objects
        assert ring.decode_jwt(token).claims["sub"] == "x"
        assert parsed == [] and verified == []

    keys_cli(runner, "rotate", "--alg", "ES256")
    with app.app_context():
        ring.invalidate()
        new_kids = {k["kid"] for k in ring.jwks()["keys"]} - {k.kid for k in signing.values()}
        # Read from its file: the new key, and the old ES256 key, whose row changed (now only published); not RS256.
        assert len(new_kids) == 1 and sorted(parsed) == sorted([*new_kids, signing["ES256"].kid])
        assert ring.signing_key("RS256") is signing["RS256"]
        assert ring.decode_jwt(token).claims["sub"] == "x"  # still verifies, against the new key set
        assert verified == ["x"]


def test_while_one_thread_rereads_the_keys_the_others_sign_with_those_loaded(app):
    import threading

    from idp.provider import current_provider

    with app.app_context():
        ring = current_provider().keys
        loaded = ring.signing_key("ES256")
    got: list[Any] = []

    def sign_elsewhere() -> None:
        with app.app_context():
            got.append(ring.signing_key("ES256"))

    with ring._lock:  # a re-read in progress on another thread
        ring._loaded_at = -1e18
        worker = threading.Thread(target=sign_elsewhere)
        worker.start()
        worker.join(timeout=5)
        assert got == [loaded], "a request waited for the re-read"
    with app.app_context():
        assert ring.signing_key("ES256") == loaded and ring.fresh  # the next caller re-reads


@pytest.mark.parametrize("command", [["generate"], ["rotate", "--alg", "ES256"]], ids=["generate", "rotate"])
def test_a_keys_folder_others_may_read_is_made_0700(app, runner, command):
    """``idp serve`` and ``idp keys generate`` on a keys folder left 0755 (a checkout's keys/, a restored backup)."""
    directory = keys_dir(app)
    directory.chmod(0o755)
    keys_cli(runner, *command)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_a_missing_keys_folder_is_created_0700(app_with, tmp_path):
    folder = tmp_path / "fresh" / "keys"
    app = app_with(keys={"dir": str(folder)})
    result = app.test_cli_runner().invoke(args=["keys", "generate", "--alg", "ES256"])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
