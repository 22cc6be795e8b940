"""The Redis control plane end to end: real redis-server processes on free ports, real
``flagedge serve --redis`` edges, the real CLI, an OpenFeature client. No mocks."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_helpers import Edge, RedisServer, document, edges, flagctl, wait_until

from flagedge.store.plane import Keys

ENV = "test"
CHILD = Path(__file__).with_name("redis_openfeature_client.py")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", persist=True).start()
    yield server
    server.kill()


def push(redis_server: RedisServer, tmp_path: Path, doc: dict[str, object]) -> int:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(doc))
    code, out, err = flagctl("push", str(path), "--redis", redis_server.url, "--env", ENV)
    assert code == 0, err
    return int(out.rsplit("version ", 1)[1])


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


def test_a_kill_through_the_cli_reaches_three_edges_and_an_openfeature_client(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push(redis_server, tmp_path, document(checkout="on", search="on"))
    with edges(redis_server.url, ENV, tmp_path, 3) as fleet:
        assert all(e.value("checkout") is True for e in fleet)
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(fleet[0].port), "checkout"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        try:
            before = json.loads(child.stdout.readline())
            assert (before["value"], before["reason"]) == (True, "STATIC")
            assert before["flushed"] == ["checkout", "search"]
            # The real command line, as ops would type it.
            kill = subprocess.run(
                [
                    *(sys.executable, "-m", "flagedge", "kill", "checkout", "--wait"),
                    *("--redis", redis_server.url, "--env", ENV, "--timeout", "30"),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert kill.returncode == 0, kill.stderr
            after = json.loads(child.stdout.readline())
            assert child.wait(30) == 0
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
        lines = kill.stdout.splitlines()
        assert lines[0] == f"kill checkout in env '{ENV}': version 2"
        assert len([line for line in lines if "applied in" in line and " ms" in line]) == 3
        assert after["changed"] == ["checkout"]
        assert (after["after"]["value"], after["after"]["reason"]) == (True, "DISABLED")
        for edge in fleet:
            result = edge.client.evaluate("checkout") if edge.client else None
            assert result is not None and result.reason == "DISABLED"
            assert edge.value("search") is True
        code, out, _ = ctl(redis_server, "status", "--json")
        status = json.loads(out)
        assert code == 0 and status["converged"] and len(status["edges"]) == 3


def test_an_edge_cut_off_while_changes_happen_converges_when_it_reconnects(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push(redis_server, tmp_path, document(a="on", b="on", c="on"))
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
    push(redis_server, tmp_path, document(a="on", b="on"))
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


def test_redis_killed_and_restarted_with_its_data_or_empty_never_sends_an_edge_back(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push(redis_server, tmp_path, document(a="on", b="on"))
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
            assert push(redis_server, tmp_path, document(a="on", b="off")) == 4
            wait_until("version 4 everywhere", lambda: converged(fleet, 4))
            assert all((e.value("a"), e.value("b")) == (True, False) for e in fleet)
            assert ctl(redis_server, "kill", "b", "--variant", "on")[0] == 0
            wait_until("version 5 everywhere", lambda: converged(fleet, 5))
            assert all(e.value("b") is True and not e.readyz()["redis_behind"] for e in fleet)
        finally:
            watch.stop()
        assert watch.went_back == []


def test_an_edge_restarted_while_redis_is_down_serves_its_last_known_good_file(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push(redis_server, tmp_path, document(a="on"))
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


def test_a_push_of_an_invalid_file_changes_nothing_and_says_why(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push(redis_server, tmp_path, document(a="on"))
    r = redis_server.client()
    keys = Keys(ENV)
    before = (r.get(keys.version), r.get(keys.definitions), r.xlen(keys.audit))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document(a="nowhere", b="on") | {"metadata": {"fractional": "v9"}}))
    code, _, err = ctl(redis_server, "push", str(bad))
    assert code == 2
    assert "nothing written" in err
    assert "flags.a.defaultVariant" in err and "metadata.fractional" in err
    bad.write_text("{ not json")
    code, _, err = ctl(redis_server, "push", str(bad))
    assert code == 2 and "invalid JSON" in err
    code, out, _ = ctl(redis_server, "kill", "a", "--variant", "maybe", "--json")
    assert code == 2 and json.loads(out)["problems"][0]["path"] == "overrides.a.variant"
    code, _, err = ctl(redis_server, "rollout", "a", "150")
    assert code == 2 and "percent" in err
    assert (r.get(keys.version), r.get(keys.definitions), r.xlen(keys.audit)) == before
    code, _, err = flagctl("status", "--redis", "redis://127.0.0.1:1", "--env", ENV)
    assert code == 3 and "unreachable" in err


def test_corrupt_values_written_by_hand_are_refused_and_the_edges_keep_serving(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push(redis_server, tmp_path, document(a="on"))
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

        assert push(redis_server, tmp_path, document(a="on")) == 3
        wait_until("version 3", lambda: converged(fleet, 3))
        r.hset(keys.overrides, "a", b"not json")  # a corrupt override, found by the check
        r.incr(keys.version)
        wait_until("the override refusal", lambda: all(e.readyz()["error"] for e in fleet))
        assert all(e.version() == 3 and e.value("a") is True for e in fleet)
        assert ctl(redis_server, "restore", "a")[0] == 0  # removing it heals the state
        wait_until("version 5", lambda: converged(fleet, 5))
        assert all(e.readyz()["error"] is None for e in fleet)


def test_acl_credentials_in_the_url_work_for_the_cli_and_the_edges(tmp_path: Path) -> None:
    server = RedisServer(
        tmp_path / "acl",
        config="user default off\nuser ops on >s3cret ~flagedge:* &* +@all\n",
    ).start()
    try:
        url = f"redis://ops:s3cret@127.0.0.1:{server.port}"
        path = tmp_path / "flags.json"
        path.write_text(json.dumps(document(a="on")))
        assert flagctl("push", str(path), "--redis", url, "--env", ENV)[0] == 0
        with edges(url, ENV, tmp_path, 1) as (edge,):
            assert flagctl("kill", "a", "--redis", url, "--env", ENV, "--wait")[0] == 0
            assert edge.value("a") is None
        wrong = f"redis://ops:nope@127.0.0.1:{server.port}"
        code, _, err = flagctl("get", "--redis", wrong, "--env", ENV)
        assert code == 3 and "invalid username-password" in err
    finally:
        server.kill()
