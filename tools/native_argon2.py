"""Build the Argon2 bindings for this machine's CPU, if that works and gives the same hashes; else keep the wheel.

Run by ``make`` after the venv is installed: ``.venv/bin/python tools/native_argon2.py``.

Why: PyPI's wheel of argon2-cffi-bindings is built for any x86-64 CPU, so the official Argon2 code in it runs its
SSE2 path. Built with ``-march=native``, the same code uses the AVX2 or AVX-512 path of the CPU it runs on: on the
benchmark machine one Argon2id hash at our parameters (m=19 MiB, t=2, p=1) took ~12 ms instead of ~21 ms, and a
password login spends most of its time there. The parameters, the hash format and every stored hash stay the same;
an attacker gains nothing (they would use such code anyway), the server spends less per login.

A venv built so runs only on CPUs with the same instruction sets: build it on the machine (or the kind of machine)
that serves, or set ``HOVIYAT_NATIVE_ARGON2=0`` to keep the portable wheel (for an image built on one machine and run
on others). Whatever happens, the bindings left installed compute the known answer below; if the build fails or
answers differently, the portable wheel is put back.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

PACKAGE = "argon2-cffi-bindings"
#: Argon2id of b"Hoviyat known answer" with salt b"a salt of 16 b..", t=2, m=19 MiB, p=1, 32 bytes: computed with
#: PyPI's portable wheel (26.2.0). tests/test_passwords.py checks the installed bindings against it too.
KNOWN_ANSWER = "ef5e64fa437c5835457016021afcfb0760647ffd2e446a998b08a5135a150692"
MARKER = os.path.join(sys.prefix, ".argon2-native")

_CHECK = """
import time
from argon2.low_level import Type, hash_secret_raw
args = (b"Hoviyat known answer", b"a salt of 16 b..", 2, 19 * 1024, 1, 32, Type.ID)
answer = hash_secret_raw(*args).hex()
times = []
for _ in range(7):
    start = time.perf_counter()
    hash_secret_raw(*args)
    times.append(time.perf_counter() - start)
print(answer, sorted(times)[3] * 1000)
"""


def log(message: str) -> None:
    print(f"native_argon2: {message}", flush=True)


def installed_build() -> str:
    """The installed bindings' version and compiled module (size, time): tells whether the native build is the one
    installed, even if pip later put a wheel of the same version back."""
    spec = importlib.util.find_spec("_argon2_cffi_bindings._ffi")
    stat = os.stat(spec.origin) if spec is not None and spec.origin else None
    return f"{metadata.version(PACKAGE)} {stat.st_size if stat else 0} {stat.st_mtime_ns if stat else 0}"


def check() -> tuple[bool, float]:
    """In a fresh interpreter: do the installed bindings give the known answer, and the median ms per hash."""
    done = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        return False, 0.0
    answer, ms = done.stdout.split()
    return answer == KNOWN_ANSWER, float(ms)


def pip_install(version: str, *, native: bool) -> bool:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps"]
    env = dict(os.environ)
    if native:
        command += [f"--no-binary={PACKAGE}", "--no-cache-dir"]  # a cached build may have other flags
        env.update({"CFLAGS": "-O3 -march=native", "ARGON2_CFFI_USE_SSE2": "1", "ARGON2_CFFI_USE_SYSTEM": "0"})
    else:
        command += [f"--only-binary={PACKAGE}"]
    done = subprocess.run([*command, f"{PACKAGE}=={version}"], env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        log(f"pip failed: {done.stderr.strip()[-500:]}")
    return done.returncode == 0


def main() -> int:
    version = metadata.version(PACKAGE)
    native_installed = os.path.exists(MARKER) and Path(MARKER).read_text().strip() == installed_build()
    if os.environ.get("HOVIYAT_NATIVE_ARGON2", "1") == "0":
        if not native_installed:
            log("HOVIYAT_NATIVE_ARGON2=0: keeping the portable wheel")
            return 0
        log("HOVIYAT_NATIVE_ARGON2=0: putting the portable wheel back")
        Path(MARKER).unlink()
        return 0 if pip_install(version, native=False) and check()[0] else 1
    if native_installed:
        return 0
    correct, portable_ms = check()
    if not correct:
        log("the installed bindings do not give the known answer; leaving them to the tests to report")
        return 1
    log(f"building {PACKAGE} {version} for this CPU (-march=native; about 10 s) ...")
    started = time.monotonic()
    if not pip_install(version, native=True):
        # pip installs only what it has built: the portable wheel is still the one installed.
        log("the build failed: keeping the portable wheel")
        return 0 if check()[0] else 1
    correct, native_ms = check()
    if correct:
        Path(MARKER).write_text(installed_build() + "\n")
        log(
            f"built in {time.monotonic() - started:.0f} s; one Argon2id hash at m=19 MiB, t=2: "
            f"{native_ms:.1f} ms (portable wheel: {portable_ms:.1f} ms)"
        )
        return 0
    log("the build does not give the known answer: putting the portable wheel back")
    if not pip_install(version, native=False) or not check()[0]:
        log("could not put the portable wheel back")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
