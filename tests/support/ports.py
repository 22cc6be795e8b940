"""Ports for the servers the tests start, without a race for them.

Every in-process server and every ``flagedge serve`` child binds port 0 and says which port
it got. A program that cannot (redis-server, a sentinel, a management port that must be
known before the logs that would name it) is started on a port that was free a moment ago:
another process may take it in between, so :func:`on_a_free_port` starts it again on
another port when it reports the port taken, a bounded number of times.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

TRIES = 5


class PortTaken(Exception):
    """The program could not bind the port it was given: someone else holds it."""


def free_port() -> int:
    """A port nothing was bound to a moment ago (bound to port 0, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def on_a_free_port(
    start: Callable[[int], T], *, pick: Callable[[], int] = free_port, tries: int = TRIES
) -> T:
    """``start(port)`` on a port from ``pick``, again on another one each time it raises
    PortTaken, at most ``tries`` times."""
    taken: list[int] = []
    for _ in range(tries):
        port = pick()
        try:
            return start(port)
        except PortTaken:
            taken.append(port)
    raise AssertionError(f"no free port after {tries} tries; taken: {taken}")
