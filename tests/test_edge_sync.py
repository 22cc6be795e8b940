"""The edge synchroniser (flagedge.store.sync) keeps an edge's snapshot on the latest valid
state in the store: an override at the next version applies without a reload or a
recompile; duplicates and older messages are ignored; a gap, garbage or a reconnect
reloads; corrupt state is refused while the last good snapshot keeps serving; an edge never
goes back, even when Redis restarts empty; the last-known-good file serves while Redis is
away. First against the in-memory twin of the store, then end to end with a real
redis-server and ``flagedge serve --redis`` edges."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from flagedge.errors import DefinitionError
from flagedge.model import Override, OverrideKind, Reason
from flagedge.snapshot import SnapshotHolder
from flagedge.store.lkg import read_lkg
from flagedge.store.memory import MemoryPlane
from flagedge.store.plane import Keys
from flagedge.store.sync import EdgeSync
from tests.support.cli import flagctl
from tests.support.cli import push as push_to
from tests.support.documents import document
from tests.support.memory_edge import KILL, NOW, make_sync, override, push, until, value
from tests.support.processes import Edge, edges
from tests.support.redis_server import RedisServer
from tests.support.server import async_test
from tests.support.wait import wait_until

ENV = "test"

# -- against the in-memory twin ---------------------------------------------------------------


@async_test
async def test_an_override_at_the_next_version_is_applied_without_a_reload() -> None:
    plane, holder = MemoryPlane(), SnapshotHolder()
    push(plane, document(a="on", b="on"))
    sync = make_sync(plane, holder)
    await sync.start()
    try:
        assert holder.current is not None and holder.current.version == 1
        base = holder.current.flags["b"]
        loads = plane.loads
        override(plane, "a", KILL)
        await until(lambda: sync.version == 2)
        assert plane.loads == loads  # no full reload
        assert holder.current.flags["b"] is base  # nothing recompiled
        assert holder.current.evaluate("a", {}, NOW).reason is Reason.DISABLED
        override(plane, "a", None)
        await until(lambda: sync.version == 3)
        assert value(holder, "a") is True and plane.loads == loads
        await until(lambda: plane.heartbeats.get("host/1/abc") is not None)
        assert plane.heartbeats["host/1/abc"].version == 3
    finally:
        await sync.stop()


@async_test
async def test_duplicates_and_older_messages_are_ignored_and_gaps_reload() -> None:
    plane, holder = MemoryPlane(), SnapshotHolder()
    push(plane, document(a="on"))
    sync = make_sync(plane, holder)
    sync.check_interval = 60  # only messages drive it here
    await sync.start()
    try:
        loads = plane.loads
        lie = b'{"version": 1, "kind": "override", "key": "a", "override": {"kind": "kill"}}'
        plane.publish_raw(lie)  # a duplicate of version 1, claiming something else
        await asyncio.sleep(0.05)
        assert value(holder, "a") is True and plane.loads == loads
        # Redis moves two steps without telling anyone; the message for the second one
        # reveals the gap, and the edge reloads the truth instead of trusting the message.
        plane.overrides["a"] = b'{"kind": "kill", "variant": "off"}'
        plane.version_ = 3
        plane.publish_raw(b'{"version": 3, "kind": "override", "key": "a", "override": null}')
        await until(lambda: sync.version == 3)
        assert value(holder, "a") is False and plane.loads == loads + 1
        plane.publish_raw(lie.replace(b'"version": 1', b'"version": 2'))  # late: ignored
        await asyncio.sleep(0.05)
        assert value(holder, "a") is False and plane.loads == loads + 1
    finally:
        await sync.stop()


@async_test
async def test_corrupt_state_is_refused_and_the_last_good_snapshot_keeps_serving() -> None:
    plane, holder = MemoryPlane(), SnapshotHolder()
    push(plane, document(a="on"))
    sync = make_sync(plane, holder)
    await sync.start()
    try:
        plane.definitions = b"{nope"
        plane.version_ = 2
        plane.publish_raw(b'{"version": 2, "kind": "definitions"}')
        await until(lambda: sync.error is not None)
        assert sync.version == 1 and value(holder, "a") is True
        assert "definitions: invalid JSON" in (sync.error or "")
        await until(lambda: plane.heartbeats["host/1/abc"].error is not None)
        push(plane, document(a="off"))
        await until(lambda: sync.version == 3)
        assert value(holder, "a") is False and sync.error is None
    finally:
        await sync.stop()


@async_test
async def test_a_store_behind_the_edge_never_sends_it_back_and_a_reseed_moves_it_on() -> None:
    plane, holder = MemoryPlane(), SnapshotHolder()
    push(plane, document(a="on"))
    override(plane, "a", KILL)
    sync = make_sync(plane, holder)
    await sync.start()
    try:
        await until(lambda: sync.version == 2)
        fresh = MemoryPlane()  # "Redis restarted empty"
        fresh.heartbeats = plane.heartbeats
        sync.plane = fresh
        plane.down = True
        await until(lambda: sync.redis_behind)
        assert sync.version == 2 and value(holder, "a") is None
        push(fresh, document(a="on"))  # version 1: older than the edge's, ignored
        await asyncio.sleep(0.1)
        assert sync.version == 2 and sync.redis_behind
        floor = max(b.version for b in fresh.heartbeats.values())
        assert push(fresh, document(a="on"), floor=floor) == 3
        await until(lambda: sync.version == 3)
        assert value(holder, "a") is True and not sync.redis_behind
    finally:
        await sync.stop()


@async_test
async def test_an_outage_keeps_serving_and_the_edge_converges_when_the_store_returns() -> None:
    plane, holder = MemoryPlane(), SnapshotHolder()
    push(plane, document(a="on"))
    sync = make_sync(plane, holder)
    await sync.start()
    try:
        plane.down = True
        await until(lambda: not sync.connected)
        assert sync.stale and value(holder, "a") is True
        plane.down = False
        override(plane, "a", KILL)
        override(plane, "a", Override(OverrideKind.KILL, "off"))
        await until(lambda: sync.version == 3 and sync.connected)
        assert value(holder, "a") is False and not sync.stale
    finally:
        await sync.stop()


@async_test
async def test_the_last_known_good_file_serves_when_the_store_is_down_at_start(
    tmp_path: Path,
) -> None:
    plane, lkg = MemoryPlane(), tmp_path / "lkg.json"
    push(plane, document(a="on"))
    override(plane, "a", KILL)
    first = make_sync(plane, SnapshotHolder(), lkg)
    await first.start()
    await until(lambda: lkg.exists() and read_lkg(lkg, "unit").version == 2)
    await first.stop()

    plane.down = True
    holder = SnapshotHolder()
    second = make_sync(plane, holder, lkg)
    await second.start(wait=0.2)
    try:
        assert second.source == "lkg" and second.stale and second.version == 2
        assert value(holder, "a") is None
        plane.down = False
        await until(lambda: second.source == "redis" and not second.stale)
    finally:
        await second.stop()
    with pytest.raises(DefinitionError, match="environment"):
        read_lkg(lkg, "other")


@async_test
async def test_a_burst_of_changes_is_saved_once_and_a_change_right_before_stop_is_saved(
    tmp_path: Path,
) -> None:
    plane, lkg = MemoryPlane(), tmp_path / "lkg.json"
    push(plane, document(a="on", b="on"))
    sync = EdgeSync(
        plane,
        SnapshotHolder(),
        env="unit",
        edge_id="host/1/abc",
        lkg_path=lkg,
        check_interval=60,
        heartbeat_interval=60,  # so that only the beat that follows an apply can report it
    )
    await sync.start()
    try:
        await until(lambda: lkg.exists() and read_lkg(lkg, "unit").version == 1)
        saved = lkg.stat().st_mtime_ns
        for i in range(10):  # a kill-switch storm, one change every 10 ms
            override(plane, "a", KILL if i % 2 == 0 else None)
            await asyncio.sleep(0.01)
        await until(lambda: sync.version == 11)
        await until(lambda: plane.heartbeats["host/1/abc"].version == 11)
        await until(lambda: read_lkg(lkg, "unit").version == 11)
        burst = lkg.stat().st_mtime_ns
        assert burst != saved
        await asyncio.sleep(0.3)
        assert lkg.stat().st_mtime_ns == burst  # one write for the whole burst
        override(plane, "b", KILL)
        await until(lambda: sync.version == 12)
    finally:
        await sync.stop()  # before the debounce has written version 12
    assert read_lkg(lkg, "unit").version == 12
    assert read_lkg(lkg, "unit").overrides.keys() == {"b"}


# -- end to end: a real redis-server, real edges -----------------------------------------------


def push_redis(redis_server: RedisServer, tmp_path: Path, doc: dict[str, object]) -> int:
    return push_to(redis_server.url, ENV, tmp_path, doc)


def ctl(redis_server: RedisServer, *argv: str) -> tuple[int, str, str]:
    return flagctl(*argv, "--redis", redis_server.url, "--env", ENV)


def converged(fleet: list[Edge], version: int) -> bool:
    return all(e.version() == version for e in fleet)


class VersionWatch:
    """Samples every edge's version in the background; ``went_back`` lists any decrease."""

    def __init__(self, fleet: list[Edge]) -> None:
        self.fleet = fleet
        self.went_back: list[tuple[int, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = [0] * len(self.fleet)
        while not self._stop.wait(0.01):
            for i, edge in enumerate(self.fleet):
                try:
                    v = edge.version()
                except Exception:
                    continue
                if v < last[i]:
                    self.went_back.append((i, last[i], v))
                last[i] = max(last[i], v)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_an_edge_cut_off_while_changes_happen_converges_when_it_reconnects(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push_redis(redis_server, tmp_path, document(a="on", b="on", c="on"))
    with edges(redis_server.url, ENV, tmp_path, 1) as (edge,):
        wait_until("the edge to load", lambda: edge.version() == 1)
        mark = edge.mark()
        edge.pause()  # SIGSTOP: it reads nothing while the changes happen
        try:
            # Drop its connections first: the changes' messages have nowhere to go.
            admin = redis_server.client()
            admin.client_kill_filter(_type="pubsub")
            admin.client_kill_filter(_type="normal", skipme=True)
            for argv in (["kill", "a"], ["kill", "b"], ["restore", "a"], ["kill", "c"]):
                assert ctl(redis_server, *argv)[0] == 0
        finally:
            edge.resume()
        wait_until("the edge to converge on version 5", lambda: edge.version() == 5)
        assert [edge.value(k) for k in "abc"] == [True, None, None]
        wait_until("the edge to be connected again", lambda: not edge.readyz()["stale"])
        assert "override on" not in "".join(edge.log[mark:])  # no message reached it


def test_duplicated_out_of_order_and_gapped_messages_are_ignored_or_resynced(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push_redis(redis_server, tmp_path, document(a="on", b="on"))
    keys = Keys(ENV)
    r = redis_server.client()
    with edges(redis_server.url, ENV, tmp_path, 1) as (edge,):
        wait_until("the edge to load", lambda: edge.version() == 1)
        mark = edge.mark()
        kill_a = {"version": 1, "kind": "override", "key": "a", "override": {"kind": "kill"}}
        r.publish(keys.channel, json.dumps(kill_a))  # a duplicate of version 1: ignored
        r.publish(keys.channel, json.dumps({**kill_a, "version": 0}))  # older: ignored
        r.publish(keys.channel, b"{garbage")  # unreadable: reload, which finds version 1
        wait_until("the reload after garbage", lambda: "unreadable change message" in edge.text())
        assert edge.value("a") is True and edge.version() == 1

        # Two changes land in Redis without their messages; then only the second's arrives.
        r.hset(keys.overrides, "a", json.dumps({"kind": "kill"}))
        r.incr(keys.version)
        r.hset(keys.overrides, "b", json.dumps({"kind": "kill", "variant": "off"}))
        r.incr(keys.version)
        kill_b = {"version": 3, "kind": "override", "key": "b", "override": {"kind": "kill"}}
        r.publish(keys.channel, json.dumps(kill_b))  # a gap (1 -> 3): full reload
        wait_until("the gap to resync", lambda: edge.version() == 3)
        # The reload took Redis's truth (b forced to off), not the message's (b off-default).
        assert (edge.value("a"), edge.value("b")) == (None, False)
        r.publish(keys.channel, json.dumps({**kill_a, "version": 2}))  # late, out of order
        r.publish(keys.channel, json.dumps({**kill_b, "version": 3}))  # duplicate
        assert ctl(redis_server, "restore", "b")[0] == 0
        wait_until("version 4", lambda: edge.version() == 4)
        assert (edge.value("a"), edge.value("b")) == (None, True)
        assert "from redis (message for version 3)" in "".join(edge.log[mark:])


@pytest.mark.redis_server(persist=True)
def test_redis_killed_and_restarted_with_its_data_or_empty_never_sends_an_edge_back(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push_redis(redis_server, tmp_path, document(a="on", b="on"))
    with edges(redis_server.url, ENV, tmp_path, 3) as fleet:
        watch = VersionWatch(fleet)
        try:
            assert ctl(redis_server, "kill", "a")[0] == 0
            wait_until("version 2 everywhere", lambda: converged(fleet, 2))

            redis_server.restart()  # SIGKILL, then back with its append-only file
            assert ctl(redis_server, "kill", "b")[0] == 0
            wait_until("version 3 everywhere", lambda: converged(fleet, 3))
            assert all((e.value("a"), e.value("b")) == (None, None) for e in fleet)

            redis_server.restart(empty=True)  # SIGKILL, and the data is gone
            wait_until(
                "every edge to see Redis behind",
                lambda: all(e.readyz()["redis_behind"] for e in fleet),
            )
            # They keep what they had: version 3, both flags killed.
            assert all(e.version() == 3 and e.value("a") is None for e in fleet)
            code, out, _ = ctl(redis_server, "status")
            assert code == 1 and "ahead of Redis" in out
            # A kill cannot land on an empty Redis; a push re-seeds above every edge.
            code, _, err = ctl(redis_server, "kill", "a")
            assert code == 2 and "push" in err
            assert push_redis(redis_server, tmp_path, document(a="on", b="off")) == 4
            wait_until("version 4 everywhere", lambda: converged(fleet, 4))
            assert all((e.value("a"), e.value("b")) == (True, False) for e in fleet)
            assert ctl(redis_server, "kill", "b", "--variant", "on")[0] == 0
            wait_until("version 5 everywhere", lambda: converged(fleet, 5))
            assert all(e.value("b") is True and not e.readyz()["redis_behind"] for e in fleet)
        finally:
            watch.stop()
        assert watch.went_back == []


@pytest.mark.redis_server(persist=True)
def test_an_edge_restarted_while_redis_is_down_serves_its_last_known_good_file(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push_redis(redis_server, tmp_path, document(a="on"))
    lkg = tmp_path / "lkg.json"
    edge = Edge(redis_server.url, ENV, lkg).wait_serving()
    try:
        assert ctl(redis_server, "kill", "a", "--variant", "off")[0] == 0
        wait_until("the kill and its file", lambda: json.loads(lkg.read_text())["version"] == 2)
    finally:
        edge.stop()
    redis_server.kill()
    edge = Edge(redis_server.url, ENV, lkg).wait_serving()
    try:
        assert edge.value("a") is False
        ready = edge.readyz()
        assert (ready["status"], ready["stale"], ready["source"], ready["version"]) == (
            "ready",
            True,
            "lkg",
            2,
        )
        assert "STALE" in edge.text()
        redis_server.start()  # back with its data
        wait_until("the edge to converge", lambda: not edge.readyz()["stale"])
        assert ctl(redis_server, "restore", "a")[0] == 0
        wait_until("version 3", lambda: edge.version() == 3)
        assert edge.value("a") is True
    finally:
        edge.stop()


def test_corrupt_values_written_by_hand_are_refused_and_the_edges_keep_serving(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push_redis(redis_server, tmp_path, document(a="on"))
    keys = Keys(ENV)
    r = redis_server.client()
    with edges(redis_server.url, ENV, tmp_path, 2) as fleet:
        wait_until("version 1", lambda: converged(fleet, 1))
        r.set(keys.definitions, b'{"flags": {"a": {"state": "ENABLED", "variants": {}}}}')
        r.incr(keys.version)
        r.publish(keys.channel, json.dumps({"version": 2, "kind": "definitions"}))
        wait_until("the refusal", lambda: all(e.readyz()["error"] for e in fleet))
        for edge in fleet:
            assert edge.version() == 1 and edge.value("a") is True
            assert "refused Redis state version 2" in edge.text()
            assert "flags.a" in edge.readyz()["error"]
        code, out, _ = ctl(redis_server, "status")
        assert "refused" in out
        code, _, err = ctl(redis_server, "kill", "a")
        assert code == 2 and "flags.a" in err  # the CLI will not build on corrupt state

        assert push_redis(redis_server, tmp_path, document(a="on")) == 3
        wait_until("version 3", lambda: converged(fleet, 3))
        r.hset(keys.overrides, "a", b"not json")  # a corrupt override, found by the check
        r.incr(keys.version)
        wait_until("the override refusal", lambda: all(e.readyz()["error"] for e in fleet))
        assert all(e.version() == 3 and e.value("a") is True for e in fleet)
        assert ctl(redis_server, "restore", "a")[0] == 0  # removing it heals the state
        wait_until("version 5", lambda: converged(fleet, 5))
        assert all(e.readyz()["error"] is None for e in fleet)
