"""Password hashing: Argon2id at OWASP's parameters, whichever build of the Argon2 code is installed.

``make`` compiles the Argon2 bindings for the machine's CPU (tools/native_argon2.py); these tests hold that build,
like the portable wheel, to the hashes the portable wheel computes, so stored passwords keep verifying.
"""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path

from argon2.low_level import Type, hash_secret_raw

from idp.passwords import hash_password, needs_rehash, verify_password


def _known_answer() -> str:
    path = Path(__file__).resolve().parent.parent / "tools" / "native_argon2.py"
    spec = importlib.util.spec_from_file_location("native_argon2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.KNOWN_ANSWER


KNOWN_ANSWER = _known_answer()
PASSWORD = "Hoviyat known answer"
SALT = b"a salt of 16 b.."


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def test_the_installed_argon2_computes_the_reference_answer():
    raw = hash_secret_raw(PASSWORD.encode(), SALT, 2, 19 * 1024, 1, 32, Type.ID)
    assert raw.hex() == KNOWN_ANSWER


def test_a_hash_made_by_the_portable_build_verifies():
    # The stored form of the known answer, as any earlier install would have written it.
    stored = f"$argon2id$v=19$m=19456,t=2,p=1${_b64(SALT)}${_b64(bytes.fromhex(KNOWN_ANSWER))}"
    assert verify_password(stored, PASSWORD)
    assert not verify_password(stored, PASSWORD + " ")
    assert not needs_rehash(stored)


def test_new_hashes_use_owasp_parameters_and_a_fresh_salt():
    first, second = hash_password("رمز عبور"), hash_password("رمز عبور")
    assert first.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert first != second
    assert verify_password(first, "رمز عبور") and verify_password(second, "رمز عبور")
    assert not verify_password(None, "رمز عبور")
