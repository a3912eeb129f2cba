"""The production install: Hoviyat built as a release is and installed in a fresh virtual environment, run from
an empty folder, migrates its database, makes its keys and serves its pages in Persian with their stylesheet.

The release is built with ``python -m build`` (the source distribution, then the wheel from it), so a file left
out of either fails here, and nothing of the checkout's own ``build/`` folder can slip into the wheel. The fresh
environment receives the wheel alone (``--no-deps``) and then sees the project's own virtual environment through
a ``.pth`` file for the dependencies: the versions the suite runs on, without resolving and installing forty
packages again. That ``.pth`` adds a folder to ``sys.path`` without running the ``.pth`` files inside it, so the
checkout's editable install is not reachable from the fresh environment; the test checks that ``idp`` is
imported from the wheel.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import requests
from babel.messages.pofile import read_po

from .conftest import free_port

REPO = Path(__file__).resolve().parent.parent
CATALOGUE = REPO / "idp" / "translations" / "fa" / "LC_MESSAGES" / "messages.po"

EXAMPLE_SITES = """
from clients.carmaker import create_app as carmaker
from clients.device_registry import create_app as device_registry
from clients.device_registry.models import Device, db

settings = {"issuer": "http://127.0.0.1:9", "client_id": "c", "client_secret": "s", "base_url": "http://127.0.0.1:9"}
for create_app in (carmaker, device_registry):
    landing = create_app(overrides=settings).test_client().get("/")
    assert landing.status_code == 200 and "ورود با هویت" in landing.text, (create_app.__module__, landing.text)
with device_registry(overrides=settings).app_context():
    assert db.session.query(Device).count() > 0, "the demo devices were not seeded from the package's data"
"""


@dataclass(frozen=True)
class Installed:
    venv: Path
    #: The ``idp`` package inside the fresh environment's site-packages.
    package: Path

    def command(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def files(self) -> dict[Path, int]:
        """The installed package's files with their modification times, but the bytecode Python caches."""
        return {
            path: path.stat().st_mtime_ns
            for path in self.package.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        }


def _environment(**settings: str) -> dict[str, str]:
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("IDP_", "PYTHON", "VIRTUAL_ENV", "CARMAKER_", "DEVICE_REGISTRY_"))
    }
    return {**kept, **settings}


def _run(args: Sequence[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(  # noqa: S603 - our own commands
        [str(arg) for arg in args], cwd=cwd, env=env or _environment(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _install(tmp_path: Path) -> Installed:
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--outdir", dist, REPO], cwd=REPO)
    (wheel,) = dist.glob("hoviyat-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", wheel], cwd=tmp_path)
    where = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path)
    site_packages = Path(where.strip())
    # Written after the install, so that pip never sees the checkout's editable hoviyat as one to replace.
    (site_packages / "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return Installed(venv, site_packages / "idp")


def _persian(message_id: str) -> str:
    with CATALOGUE.open("rb") as po_file:
        return read_po(po_file)[message_id].string


def _wait_for(url: str, server: subprocess.Popen[bytes], seconds: float = 60) -> requests.Response:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return requests.get(url, timeout=5)
        except requests.ConnectionError:
            assert server.poll() is None, f"idp serve exited with {server.returncode}"
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _stop(server: subprocess.Popen[bytes]) -> str:
    server.send_signal(signal.SIGTERM)
    try:
        output, _ = server.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        output, _ = server.communicate()
    return output.decode(errors="replace")


def test_the_installed_wheel_serves_its_pages_in_persian_from_an_empty_folder(tmp_path):
    installed = _install(tmp_path)
    site = tmp_path / "site"  # the working folder of an installed service: no checkout, no config.toml
    site.mkdir()
    imported = "import idp, clients; print(idp.__file__, clients.__file__)"
    where = _run([installed.command("python"), "-c", imported], site)
    assert all(Path(path).is_relative_to(installed.venv) for path in where.split()), where
    installed_files = installed.files()
    assert installed.package / "translations" / "fa" / "LC_MESSAGES" / "messages.mo" in installed_files
    for folder in ("templates", "static"):  # installed as idp.templates and idp.static
        shipped = {
            path.relative_to(installed.package / folder)
            for path in installed_files
            if path.is_relative_to(installed.package / folder)
        }
        in_repo = {
            path.relative_to(REPO / folder)
            for path in (REPO / folder).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        }
        assert in_repo <= shipped, f"not in the wheel (package data in pyproject.toml): {in_repo - shipped}"

    port = free_port()
    env = _environment(IDP_SERVER_ISSUER=f"http://127.0.0.1:{port}")
    _run([installed.command("idp"), "db", "upgrade"], site, env)
    _run([installed.command("idp"), "keys", "generate"], site, env)
    command = [installed.command("idp"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    server = subprocess.Popen(  # noqa: S603 - the installed idp
        command, cwd=site, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        login = _wait_for(f"http://127.0.0.1:{port}/login", server)
        stylesheet = requests.get(f"http://127.0.0.1:{port}/static/style.css", timeout=5)
    finally:
        output = _stop(server)

    assert login.status_code == 200, output[-3000:]
    assert login.headers["Content-Type"].startswith("text/html")
    assert _persian("Log in to Hoviyat") in login.text, login.text  # the compiled catalogue was shipped and found
    assert stylesheet.status_code == 200, output[-3000:]
    assert stylesheet.headers["Content-Type"].startswith("text/css")
    assert stylesheet.content == (REPO / "static" / "style.css").read_bytes()

    _run([installed.command("python"), "-c", EXAMPLE_SITES], site, _environment())
    # A service's site-packages may be read-only: nothing above may have written there.
    assert installed.files() == installed_files
