"""The CPU time of one DPoP proof check (idp.oidc.dpop.verify_proof), in process: ``python -m bench.dpop_cost``.

A proof at userinfo, as a client sends them: ES256 (and PS256), the same key every time, a new ``jti``, ``ath``
of its access token. The proofs are made before the clock starts; the check is timed with the process's CPU
clock over many proofs, the in-process store taking each ``jti`` (with Redis, that is one round trip, mostly
waiting, which this does not count). The target is under 0.3 ms of a worker's CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from idp import create_app
from idp.oidc.dpop import verify_proof
from idp.security import b64url

TARGET_MS = 0.3


def proofs(alg: str, url: str, token: str, count: int) -> list[str]:
    key = ECKey.generate_key("P-256", private=True) if alg == "ES256" else RSAKey.generate_key(2048, private=True)
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict(private=False)}
    ath = b64url(hashlib.sha256(token.encode()).digest())
    now = int(time.time())
    return [
        jwt.encode(header, {"jti": secrets.token_urlsafe(16), "htm": "GET", "htu": url, "iat": now, "ath": ath}, key,
                   algorithms=[alg])
        for _ in range(count)
    ]  # fmt: skip


def measure(alg: str, count: int, rounds: int) -> list[float]:
    """CPU milliseconds per check, one figure per round."""
    with tempfile.TemporaryDirectory() as folder:
        app = create_app({"server": {"var_dir": folder}, "database": {"url": f"sqlite:///{Path(folder) / 'db'}"}})
        issuer = app.extensions["idp"].issuer
        url = issuer + "/userinfo"
        token = "an-access-token." + secrets.token_urlsafe(200)
        figures = []
        with app.test_request_context("/userinfo"):
            verify_proof(proofs(alg, url, token, 1), "GET", url, access_token=token)  # warm: imports, key cache
            for _ in range(rounds):
                batch = proofs(alg, url, token, count)
                started = time.process_time()
                for proof in batch:
                    verify_proof([proof], "GET", url, access_token=token)
                figures.append((time.process_time() - started) * 1000 / count)
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dpop_cost", description=__doc__)
    parser.add_argument("--count", type=int, default=2000, help="proofs per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    args = parser.parse_args()
    for alg in ("ES256", "PS256"):
        figures = measure(alg, args.count, args.rounds)
        best, median = min(figures), statistics.median(figures)
        verdict = "met" if median < TARGET_MS else "NOT met"
        print(
            f"{alg}: one DPoP proof check costs {median:.3f} ms of CPU (median of {args.rounds} rounds of "
            f"{args.count}; best {best:.3f} ms); target < {TARGET_MS} ms: {verdict}"
        )


if __name__ == "__main__":
    main()
