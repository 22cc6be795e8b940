"""The ways to reach Redis (flagedge.store.redis), end to end with real processes: ACL
credentials in the URL, ``rediss://`` (TLS) and Sentinel. The CLI pushes and kills; a
``flagedge serve`` edge serves the pushed flag and applies the kill. Every wait is bounded;
nothing asserts on speed."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import flagctl
from tests.support.documents import document
from tests.support.processes import Edge, edges
from tests.support.redis_server import RedisExited, RedisServer, Tls
from tests.support.tls import certificates
from tests.support.wait import wait_until

ENV = "conn"


def _round_trip(url: str, tmp_path: Path, *edge_args: str) -> None:
    """Push through the CLI, see an edge serve it, kill through the CLI, see the edge apply it."""
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(document(a="on")))
    code, _, err = flagctl("push", str(path), "--redis", url, "--env", ENV)
    assert code == 0, err
    edge = Edge(url, ENV, tmp_path / "lkg.json", *edge_args)
    try:
        edge.wait_serving()
        assert edge.value("a") is True
        code, _, err = flagctl("kill", "a", "--redis", url, "--env", ENV, "--wait")
        assert code == 0, err
        # Every worker applies it (a worker still starting may not have been counted by --wait).
        wait_until(
            "every worker to apply the kill",
            lambda: all(edge.value("a") is None for _ in range(20)),
        )
        ready = edge.readyz()
        assert ready["connected"] is True and ready["stale"] is False
        assert ready["source"] == "redis" and ready["error"] is None
    finally:
        assert edge.stop() == 0, edge.text()


# -- TLS ------------------------------------------------------------------------------------


@contextlib.contextmanager
def tls_redis(directory: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server that speaks only TLS (no client certificates asked): (port, CA file)."""
    ca, cert, key = certificates(directory / "certs")
    server = RedisServer(directory, tls=Tls(ca=ca, cert=cert, key=key))
    try:
        server.start()
    except RedisExited as exc:
        if "TLS" in exc.log and "not" in exc.log.lower():
            pytest.skip(f"this redis-server was built without TLS: {exc.log[-300:]}")
        raise
    try:
        yield server.port, ca
    finally:
        server.kill()


@pytest.mark.parametrize("workers", [1, 2])
def test_rediss_urls_work_for_the_cli_and_an_edge(tmp_path: Path, workers: int) -> None:
    # With two workers the supervisor hands the URL (CA option included) on to each.
    with tls_redis(tmp_path / "tls") as (port, ca):
        url = f"rediss://127.0.0.1:{port}?ssl_ca_certs={ca}"
        _round_trip(url, tmp_path, f"--workers={workers}")


def test_a_rediss_url_refuses_a_server_it_cannot_verify(tmp_path: Path) -> None:
    with tls_redis(tmp_path / "tls") as (port, _ca):
        # No CA given: the system's trust store does not know the test CA.
        code, _, err = flagctl("get", "--redis", f"rediss://127.0.0.1:{port}", "--env", ENV)
        assert code != 0 and "certificate" in err.lower(), err


# -- Sentinel -------------------------------------------------------------------------------


@contextlib.contextmanager
def sentinel(directory: Path, master_port: int) -> Iterator[int]:
    """One ``redis-server --sentinel`` watching the master on ``master_port`` as mymaster."""
    server = RedisServer(
        directory,
        sentinel=True,
        config=f"sentinel monitor mymaster 127.0.0.1 {master_port} 1\n"
        "sentinel down-after-milliseconds mymaster 60000\n",
    ).start()
    try:

        def knows_master() -> bool:
            with contextlib.closing(server.client()) as client:
                reply = client.execute_command("SENTINEL", "get-master-addr-by-name", "mymaster")
            return reply is not None and int(reply[1]) == master_port

        wait_until("the sentinel to know the master", knows_master, 15)
        yield server.port
    finally:
        server.kill()


def test_a_sentinel_url_works_for_the_cli_and_an_edge(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with sentinel(tmp_path / "sentinel", redis_server.port) as port:
        _round_trip(f"redis+sentinel://127.0.0.1:{port}/mymaster", tmp_path)


def test_sentinel_options_work_for_the_cli_and_an_edge(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with sentinel(tmp_path / "sentinel", redis_server.port) as port:
        options = ("--sentinel", f"127.0.0.1:{port}", "--sentinel-master", "mymaster")
        path = tmp_path / "flags.json"
        path.write_text(json.dumps(document(a="on")))
        code, _, err = flagctl("push", str(path), "--env", ENV, *options)
        assert code == 0, err
        edge = Edge("", ENV, tmp_path / "lkg.json", *options)
        try:
            edge.wait_serving()
            assert edge.value("a") is True
            code, _, err = flagctl("kill", "a", "--env", ENV, "--wait", *options)
            assert code == 0, err
            wait_until("the edge to apply the kill", lambda: edge.value("a") is None)
            assert edge.readyz()["connected"] is True
        finally:
            assert edge.stop() == 0, edge.text()
        # The data went to the master the sentinel named.
        with contextlib.closing(redis_server.client()) as client:
            assert client.get(f"flagedge:{ENV}:version") == b"2"


# -- ACL users --------------------------------------------------------------------------------


def test_acl_credentials_in_the_url_work_for_the_cli_and_the_edges(tmp_path: Path) -> None:
    server = RedisServer(
        tmp_path / "acl",
        config="user default off\nuser ops on >s3cret ~flagedge:* &* +@all\n",
        username="ops",
        password="s3cret",
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
