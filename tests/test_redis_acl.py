"""Redis with least privilege: a real redis-server configured with exactly the ACL users the
README documents. An edge running as the edge user serves, reports heartbeats and usage,
and applies a kill pushed by the writer user; the edge user cannot write (a ``push`` with it
is refused with a clear message, exit 2, no traceback) and neither user reaches another
environment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.cli import flagctl
from tests.support.documents import document
from tests.support.processes import Edge
from tests.support.redis_acl import AclRedis, start_acl_redis
from tests.support.wait import wait_until

ENV = "prod"


@pytest.fixture
def acl(tmp_path: Path) -> Iterator[AclRedis]:
    server = start_acl_redis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.server.kill()


def _push(url: str, tmp_path: Path, env: str = ENV, **defaults: str) -> tuple[int, str, str]:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(document(**defaults)))
    return flagctl("push", str(path), "--redis", url, "--env", env)


def test_an_edge_as_the_edge_user_serves_and_applies_a_kill_from_the_writer_user(
    acl: AclRedis, tmp_path: Path
) -> None:
    code, _, err = _push(acl.writer_url, tmp_path, a="on", b="on")
    assert code == 0, err
    edge = Edge(acl.edge_url, ENV, tmp_path / "lkg.json", "--usage-interval=0.2")
    try:
        edge.wait_serving()
        assert edge.value("a") is True
        code, out, err = flagctl(
            "kill", "a", "--redis", acl.writer_url, "--env", ENV, "--wait", "--json"
        )
        assert code == 0, err
        assert json.loads(out)["converged"] is True  # the writer reads the edge's heartbeat
        wait_until("the edge to apply the kill", lambda: edge.value("a") is None)
        assert edge.value("b") is True

        # Usage reports (HINCRBY, EXPIRE, SET NX) went through as the edge user.
        admin = acl.server.client(username="flagedge-writer-prod", password=acl.writer_password)
        wait_until(
            "the edge's usage report",
            lambda: list(admin.scan_iter(match=f"flagedge:{ENV}:usage:2*")),
        )
        assert "NOPERM" not in edge.text() and "refused" not in edge.text()
    finally:
        assert edge.stop() == 0, edge.text()


def test_the_edge_user_cannot_write_and_a_push_with_it_is_refused_clearly(
    acl: AclRedis, tmp_path: Path
) -> None:
    code, _, err = _push(acl.writer_url, tmp_path, a="on")
    assert code == 0, err
    for attempt in (
        lambda: _push(acl.edge_url, tmp_path, a="off"),
        lambda: flagctl("kill", "a", "--redis", acl.edge_url, "--env", ENV),
    ):
        code, _, err = attempt()
        assert code == 2, err
        # The write path reads the live edges first (SCAN), then runs the script (EVALSHA):
        # the edge user may do neither, and Redis's words say which one was refused.
        assert "refused the command: this user has no permissions to run the '" in err
        assert "least privilege" in err and "Traceback" not in err
        assert acl.edge_password not in err
    # Reads still work for it, and nothing was written.
    code, out, err = flagctl("get", "a", "--redis", acl.edge_url, "--env", ENV, "--json")
    assert code == 0, err
    assert json.loads(out)["flags"]["a"]["definition"]["defaultVariant"] == "on"

    edge = acl.server.client(username="flagedge-edge-prod", password=acl.edge_password)
    for forbidden in (
        lambda: edge.set(f"flagedge:{ENV}:definitions", "{}"),
        lambda: edge.hset(f"flagedge:{ENV}:overrides", "a", "{}"),
        lambda: edge.publish(f"flagedge:{ENV}:changes", "{}"),
        lambda: edge.xrange(f"flagedge:{ENV}:audit"),
        lambda: edge.get("flagedge:staging:definitions"),
        lambda: edge.flushall(),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()


def test_neither_user_reaches_another_environment(acl: AclRedis, tmp_path: Path) -> None:
    code, _, err = _push(acl.writer_url, tmp_path, env="staging", a="on")
    assert code == 2 and "refused the command" in err, err
    edge = Edge(acl.edge_url, "staging", tmp_path / "lkg.json")
    try:
        # It cannot even subscribe to staging's channel: it says why, and keeps trying (with
        # nothing to serve, it does not open its gRPC port).
        edge.wait_log("refused the command: this user has no permissions to access one of the")
        assert edge.process.poll() is None and "serving gRPC" not in edge.text()
        assert acl.edge_password not in edge.text()
    finally:
        edge.stop()
