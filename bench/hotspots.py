"""Summarise the py-spy profiles that ``python -m bench --profile DIR`` wrote: ``python -m bench.hotspots DIR``.

For each profile: the share of samples per function, exclusive (the function itself was running) and
inclusive (it was on the stack), for the top entries; threads that only wait (idle) are left out.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_IDLE = re.compile(r"(select|poll|accept|wait|_wait_for_tstate_lock|sleep|readinto|recv_into) \(")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]+):\d+\)$")


def _name(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    return f"{match['file']}:{match['func']}"


def summarise(path: Path, top: int = 15) -> str:
    exclusive: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        if "Flask.wsgi_app" not in stack:
            continue  # a thread that is not serving a request (the event loop, idle pool threads)
        n = int(count)
        total += n
        exclusive[_name(frames[-1])] += n
        for name in {_name(f) for f in frames}:
            inclusive[name] += n
    if not total:
        return f"{path.name}: no samples"
    out = [f"== {path.stem}: {total} samples while serving requests"]
    out.append("  exclusive (self) time:")
    out += [f"    {n / total:6.1%}  {name}" for name, n in exclusive.most_common(top)]
    out.append("  inclusive time, project code (idp/) and notable libraries:")
    shown = 0
    for name, n in inclusive.most_common():
        if name.startswith(("idp/", "authlib/", "joserfc/", "sqlalchemy/", "argon2/", "redis/")):
            out.append(f"    {n / total:6.1%}  {name}")
            shown += 1
            if shown >= top:
                break
    return "\n".join(out)


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "bench-profiles")
    for path in sorted(folder.glob("*.txt")):
        print(summarise(path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
