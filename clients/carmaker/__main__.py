"""``python -m clients.carmaker [--host H] [--port P]``: serve the sales portal with gunicorn."""

from __future__ import annotations

from ..rp_kit.serve import serve

if __name__ == "__main__":
    serve("clients.carmaker:create_app()", default_port=5001)
