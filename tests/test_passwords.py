"""Password hashing: Argon2id at OWASP's parameters, whichever build of the Argon2 code is installed.

``make`` compiles the Argon2 bindings for the machine's CPU (tools/native_argon2.py); these tests hold that build,
like the portable wheel, to the hashes the portable wheel computes, so stored passwords keep verifying.
"""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path

import pytest
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


def test_all_argon2_work_of_a_process_runs_on_one_thread(monkeypatch):
    """One thread, so one 19 MiB block stays warm in its heap (idp.cli.serve), whichever request thread asks."""
    import threading

    import idp.passwords as passwords

    seen: list[str] = []
    real_verify = passwords.HASHER.verify

    class Recording:
        hash = staticmethod(passwords.HASHER.hash)

        def verify(self, stored: str, password: str) -> bool:
            seen.append(threading.current_thread().name)
            return real_verify(stored, password)

    monkeypatch.setattr(passwords, "HASHER", Recording())
    stored = hash_password("a password")
    results: list[bool] = []
    askers = [threading.Thread(target=lambda: results.append(verify_password(stored, "a password"))) for _ in range(3)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join()
    assert results == [True, True, True]
    assert len(set(seen)) == 1 and seen[0].startswith("argon2"), seen


_CHILD = """
import os, resource
from idp.passwords import hash_password, verify_password
stored = hash_password("a password")
verify_password(stored, "a password")
pid = os.fork()  # as gunicorn starts a worker: the child must check passwords on a thread of its own
if pid == 0:
    verify_password(stored, "a password")  # its first check copies the parent's pages (copy-on-write), once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    ok = all(verify_password(stored, "a password") for _ in range(4))
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 4
    print(ok, faults, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_a_worker_keeps_the_argon2_block_mapped_between_checks():
    """Unmapped after each check, the block's ~4,900 pages were faulted in afresh for every login. `idp serve`
    gives its server glibc's malloc tunables (idp.cli.serve.server_environment); counted in a forked child, as in
    a gunicorn worker: page faults, not time."""
    import os
    import platform
    import subprocess
    import sys

    from idp.cli.serve import server_environment

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("the setting is glibc's")
    served = server_environment("unused")["GLIBC_TUNABLES"]
    runs = {}
    for mode, tunables in (("keep", served), ("unmapped", "glibc.malloc.mmap_threshold=1048576")):
        env = {**os.environ, "GLIBC_TUNABLES": tunables}
        command = [sys.executable, "-c", _CHILD]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)  # noqa: S603 - our child
        assert done.returncode == 0, done.stderr
        ok, faults = done.stdout.split()
        assert ok == "True"
        runs[mode] = int(faults)
    assert runs["unmapped"] > 4000, runs  # 19 MiB of 4 KiB pages, each faulted in again
    assert runs["keep"] < 500, runs  # the block stays mapped: a few pages of bookkeeping at most
