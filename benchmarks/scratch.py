"""What the Redis-fed benchmarks (propagation, sync_propagation, ofrep, soak) each set up the
same way: a free loopback port, a throwaway redis-server's command line, the wait until it
answers, and the flag set with the on/off switch their flips turn over."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A loopback port free at the time of asking."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_command(port: int, directory: Path) -> list[str]:
    """redis-server on loopback ``port``, keeping nothing on disk (its files in ``directory``)."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    return [
        *(binary, "--port", str(port), "--bind", "127.0.0.1"),
        *("--save", "", "--appendonly", "no", "--dir", str(directory)),
    ]


def wait_for_redis(admin: Any, timeout: float = 10.0) -> None:
    """Return once ``admin`` (a RedisAdmin) gets an answer; the last error after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.version()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def push(admin: Any, document: dict[str, Any]) -> None:
    """The first definitions write of a fresh Redis (version 0), as the CLI's push makes it."""
    from flagedge.store.plane import ChangeKind, Write

    definitions = json.dumps(document).encode()
    assert admin.write(
        Write(0, ChangeKind.DEFINITIONS, "bench", "push", definitions=definitions)
    ).ok


def with_switch(document: dict[str, Any], key: str) -> dict[str, Any]:
    """``document`` with ``key`` added: a boolean flag, on by default, for the flips."""
    document["flags"][key] = {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "on",
    }
    return document
