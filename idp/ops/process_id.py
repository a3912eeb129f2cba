"""This process's id, remembered: prometheus_client asks for it on every counter update (to notice a fork) and
gunicorn's log lines print it, and on this kind of machine each ``getpid`` system call costs as much as a few
lines of Python. Renewed in a forked child before anything else runs there."""

from __future__ import annotations

import os

_process_id = os.getpid()


def current_process_id() -> int:
    return _process_id


def _forked() -> None:
    global _process_id
    _process_id = os.getpid()


os.register_at_fork(after_in_child=_forked)
