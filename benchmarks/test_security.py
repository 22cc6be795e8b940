"""What security costs on the request path, with no server in the way: the token check every
call passes with an auth file (metadata scan, SHA-256, table lookup, constant-time compare,
the per-client count), and the caller's view of the snapshot (one ContextVar read when the
caller sees every flag; a cached view when it is limited to prefixes).

Run:  .venv/bin/python -m pytest benchmarks/test_security.py --benchmark-only
Target (BENCHMARKS.md, "Security"): the token check under 2 us per call. These check
answers, never times.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flagedge.auth import entry_for, new_token
from flagedge.serve.config import SecurityConfig
from flagedge.serve.security import Security
from flagedge.server.caller import CALLER, Gate, Views
from flagedge.snapshot import Snapshot

TOKENS = 100  # entries in the auth file


def _peer() -> str:
    return "ipv4:127.0.0.1:40000"


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Gate, str, str]:
    tokens = [new_token() for _ in range(TOKENS)]
    entries = [entry_for(f"service-{i}", t, ["evaluate"]) for i, t in enumerate(tokens)]
    limited = new_token()
    entries.append(entry_for("checkout", limited, ["evaluate"], flags=["checkout-"]))
    path = Path(tmp_path_factory.mktemp("auth")) / "auth.json"
    path.write_text(json.dumps({"tokens": entries}))
    security = Security(SecurityConfig(auth_file=str(path)))
    from flagedge.auth import Scope

    return Gate(security.authorize, Scope.EVALUATE), tokens[TOKENS // 2], limited


def _metadata(token: str) -> tuple[tuple[str, str], ...]:
    # What grpc.aio hands a handler: the user agent, then the client's own metadata.
    return (
        ("user-agent", "grpc-python-asyncio/1.66.0 grpc-c/43.0.0 (linux; chttp2)"),
        ("authorization", f"Bearer {token}"),
    )


def test_token_check(benchmark: Any, gate: tuple[Gate, str, str]) -> None:
    """Gate.check: the whole per-call check of a known token (the target: under 2 us)."""
    check, token, _ = gate
    metadata = _metadata(token)
    # 100 checks per timing: one alone is near the timer's own cost.
    identity = benchmark.pedantic(
        check.check, args=(metadata, _peer), iterations=100, rounds=200, warmup_rounds=5
    )
    assert identity.name == f"service-{TOKENS // 2}"


def test_snapshot_view_for_a_caller_who_sees_every_flag(
    benchmark: Any, mixed: Snapshot, gate: tuple[Gate, str, str]
) -> None:
    """Views.of for an unrestricted caller: what an edge without prefixes pays per call."""
    views = Views()
    CALLER.set(gate[0].check(_metadata(gate[1]), _peer))
    view = benchmark.pedantic(views.of, args=(mixed,), iterations=1000, rounds=100)
    assert view is mixed


def test_snapshot_view_for_a_caller_limited_to_prefixes(
    benchmark: Any, mixed: Snapshot, gate: tuple[Gate, str, str]
) -> None:
    """Views.of for a caller limited to flag prefixes: a cached view after the first call."""
    views = Views()
    token = CALLER.set(gate[0].check(_metadata(gate[2]), _peer))
    try:
        view = benchmark.pedantic(views.of, args=(mixed,), iterations=1000, rounds=100)
    finally:
        CALLER.reset(token)
    assert view is not mixed and all(k.startswith("checkout-") for k in view.keys)
