"""The real OpenFeature flagd provider in IN_PROCESS mode (openfeature-provider-flagd, in a
child process: tests/support/sync_openfeature_client.py) syncing from flagedge: it answers
the golden cases as the edge does, a kill switch written to a real redis-server with the
real CLI reaches it, and after an edge restart it goes STALE and recovers with the current
state."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flagedge.server.rpc import start_sync_server
from flagedge.snapshot import Snapshot, SnapshotHolder
from tests.support.cli import flagctl
from tests.support.golden import same_json
from tests.support.ports import free_port
from tests.support.processes import Edge
from tests.support.redis_server import RedisServer
from tests.support.reference import infer_type
from tests.support.sync_openfeature_client import InProcessProvider
from tests.support.sync_reference import case_now, edge_answer, golden_groups

MARKER = "__golden_document__"


class SyncServerThread:
    """A sync server on port 0 in a thread of its own, serving ``holder``, so that this
    process can install snapshots while a provider child reads them."""

    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),))
        self._thread.start()
        assert self._ready.wait(30), "the sync server did not start"

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        server = await start_sync_server(self.holder, "127.0.0.1", 0, source="golden")
        self.port = server.port
        self._ready.set()
        await self._stop.wait()
        await server.stop(1)

    def close(self) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self._loop.close()


def with_marker(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """``doc`` plus a string flag answering ``name``: the provider has this document once
    the marker answers it."""
    doc = copy.deepcopy(doc)
    marker = {"state": "ENABLED", "variants": {name: name}, "defaultVariant": name}
    if isinstance(doc.get("flags"), list):
        doc["flags"].append({"key": MARKER, **marker})
    else:
        doc["flags"][MARKER] = marker
    return doc


@pytest.fixture(scope="module")
def golden_provider() -> Iterator[tuple[SnapshotHolder, InProcessProvider]]:
    holder = SnapshotHolder(Snapshot.build(with_marker({"flags": {}}, "empty")))
    server = SyncServerThread(holder)
    provider = InProcessProvider(server.port)
    try:
        provider.event("READY")
        yield holder, provider
    finally:
        provider.close()
        server.close()


# The provider evaluates with openfeature-flagd-core 2.0, which buckets with v3 only.
_V3 = [g for g in golden_groups() if g[1] == "v3"]


@pytest.mark.parametrize(
    ("stem", "doc", "cases"), [pytest.param(g[0], g[2], g[3], id=g[0]) for g in _V3]
)
def test_the_in_process_provider_answers_every_golden_case_as_the_edge_does(
    golden_provider: tuple[SnapshotHolder, InProcessProvider],
    stem: str,
    doc: dict[str, Any],
    cases: list[dict[str, Any]],
) -> None:
    holder, provider = golden_provider
    current = holder.current
    version = 1 if current is None else current.version + 1
    snap = Snapshot.build(with_marker(doc, stem), version=version)
    holder.install(snap)
    asked = [
        {
            "flag": case["flag"],
            "type": case.get("type") or infer_type(doc, case["flag"]),
            "context": dict(case.get("context") or {}),
        }
        for case in cases
    ]
    reply = provider.send({"cmd": "eval", "marker": [MARKER, stem], "cases": asked})
    assert "answers" in reply, reply
    for case, ask, got in zip(cases, asked, reply["answers"], strict=True):
        edge = edge_answer(snap, ask["flag"], ask["context"], ask["type"], case_now(case))
        label = f"{case['name']}: provider {got} != edge {edge}"
        for field in ("reason", "errorCode", "variant"):
            assert got[field] == edge[field], label
        assert same_json(got["value"], edge["value"]), label
        if edge["errorCode"] is None:
            assert same_json(got["metadata"], edge["metadata"]), label


# -- through Redis: a kill switch, an edge restart ----------------------------------------------

ENV = "sync"
DOC = {
    "flags": {
        "checkout": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "on",
        },
        "banner": {
            "state": "ENABLED",
            "variants": {"old": "old", "new": "new"},
            "defaultVariant": "old",
            "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "new", None]},
        },
    }
}


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(DOC))
    code, _, err = flagctl("push", str(path), "--redis", server.url, "--env", ENV)
    assert code == 0, err
    yield server
    server.kill()


def ctl(redis: RedisServer, *argv: str) -> None:
    code, _, err = flagctl(*argv, "--redis", redis.url, "--env", ENV)
    assert code == 0, err


def test_a_kill_switch_written_to_redis_reaches_the_in_process_provider(
    control_plane: RedisServer, tmp_path: Path
) -> None:
    sync_port = free_port()
    edge = Edge(control_plane.url, ENV, tmp_path / "lkg.json", f"--sync-port={sync_port}")
    provider = None
    try:
        edge.wait_serving()
        provider = InProcessProvider(sync_port)
        provider.event("READY")
        assert provider.wait_value("checkout", "boolean", True)["seen"]
        provider.drain()

        ctl(control_plane, "kill", "checkout", "--variant", "off")
        changed = provider.event("CHANGED")
        assert changed["flags"] == ["checkout"]
        assert provider.wait_value("checkout", "boolean", False)["seen"]

        ctl(control_plane, "kill", "banner")  # no variant: off, the caller's default
        assert provider.event("CHANGED")["flags"] == ["banner"]
        pro = {"targetingKey": "u1", "plan": "pro"}
        assert provider.wait_for("banner", "string", pro, reason="DISABLED", value=None)["seen"]

        ctl(control_plane, "rollout", "banner", "100", "--variant", "new")
        free = {"targetingKey": "u2", "plan": "free"}
        assert provider.wait_value("banner", "string", "new", free)["seen"]
        # Without a targeting key no one is in a rollout: the definition answers.
        assert provider.wait_value("banner", "string", "old", {"plan": "free"})["seen"]
        ctl(control_plane, "restore", "banner")
        assert provider.wait_value("banner", "string", "old", free)["seen"]
        assert provider.wait_value("banner", "string", "new", pro)["seen"]
        assert provider.wait_value("checkout", "boolean", False)["seen"]  # still killed
    finally:
        if provider is not None:
            provider.close()
        edge.stop()


def test_after_an_edge_restart_the_provider_goes_stale_and_recovers_the_current_state(
    control_plane: RedisServer, tmp_path: Path
) -> None:
    sync_port = free_port()
    lkg = tmp_path / "lkg.json"
    edge = Edge(control_plane.url, ENV, lkg, f"--sync-port={sync_port}").wait_serving()
    provider = InProcessProvider(sync_port)
    try:
        provider.event("READY")
        assert provider.wait_value("checkout", "boolean", True)["seen"]
        provider.drain()

        assert edge.stop() == 0
        provider.event("STALE")
        # The provider keeps answering what it had while the edge is away...
        assert provider.wait_value("checkout", "boolean", True)["seen"]
        # ...and a kill switch flipped meanwhile reaches it once an edge is back.
        ctl(control_plane, "kill", "checkout", "--variant", "off")
        edge = Edge(control_plane.url, ENV, lkg, f"--sync-port={sync_port}").wait_serving()
        provider.event("READY")
        assert provider.wait_value("checkout", "boolean", False)["seen"]
    finally:
        provider.close()
        edge.stop()
