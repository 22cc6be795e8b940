"""The event loop a server process runs on: uvloop when it is installed, asyncio's otherwise.

grpc.aio spends most of a unary call in its own machinery on the event loop (waking the loop
from its completion-queue thread, scheduling the handler task, writing the answer), and on
uvloop that machinery costs less: on the 2-core benchmark machine a bare echo server's CPU per
call drops by about a tenth and flagedge's by about as much (BENCHMARKS.md, "gRPC server").
uvloop is a dependency on Linux. ``--event-loop asyncio`` (FLAGEDGE_EVENT_LOOP) forces the
standard loop; ``uvloop`` makes a missing uvloop an error instead of a silent fallback.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_name(wanted: str = "auto") -> str:
    """``uvloop`` or ``asyncio``: the loop :func:`run` will use for ``wanted`` (auto,
    uvloop or asyncio)."""
    if wanted not in ("auto", "uvloop", "asyncio"):
        raise ValueError(f"the event loop is auto, uvloop or asyncio, not {wanted!r}")
    if wanted == "asyncio":
        return "asyncio"
    try:
        importlib.import_module("uvloop")
    except ImportError:
        if wanted == "uvloop":
            raise
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T], wanted: str = "auto") -> T:
    """``asyncio.run(main)``, on uvloop where :func:`loop_name` says so."""
    try:
        name = loop_name(wanted)
    except (ValueError, ImportError):
        main.close()  # never started: close it so that it is not reported as never awaited
        raise
    if name == "uvloop":
        uvloop = importlib.import_module("uvloop")  # untyped, optional: import by name
        result: T = uvloop.run(main)
        return result
    return asyncio.run(main)
