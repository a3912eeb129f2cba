"""``python -m clients.device_registry [--host H] [--port P]``: serve the device registry with gunicorn."""

from __future__ import annotations

from ..rp_kit.serve import serve

if __name__ == "__main__":
    serve("clients.device_registry:create_app()", default_port=5002)
