"""The test support itself (tests/support/): the golden files are well formed, the JSON
equality the tests compare with does not confuse booleans with numbers, and a redis-server
is started without a race for its port."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest

from tests.support.golden import load_cases, same_json
from tests.support.ports import PortTaken, free_port, on_a_free_port
from tests.support.redis_server import RedisServer

ALL = load_cases()


def test_same_json_is_strict_about_booleans() -> None:
    assert same_json(1, 1.0) and same_json({"a": [True]}, {"a": [True]})
    assert not same_json(True, 1) and not same_json(0, False) and not same_json([1], [True])


def test_every_golden_case_is_well_formed() -> None:
    assert len(ALL) >= 150
    reasons = {"STATIC", "TARGETING_MATCH", "DEFAULT", "DISABLED", "ERROR"}
    codes = {None, "FLAG_NOT_FOUND", "PARSE_ERROR", "TYPE_MISMATCH", "GENERAL"}
    for stem, case, _doc in ALL:
        assert case["name"] and case["flag"], stem
        exp = case["expect"]
        assert exp["reason"] in reasons, (stem, case["name"])
        assert exp.get("errorCode") in codes, (stem, case["name"])
        assert case.get("fractional", "v3") in ("v2", "v3"), (stem, case["name"])
        assert case.get("type") in (None, "boolean", "string", "integer", "float", "object")
        ref = case.get("reference")
        assert ref == "agree" or (isinstance(ref, str) and ref.startswith("skip: ")), (
            stem,
            case["name"],
        )
        if exp["reason"] in ("ERROR", "DISABLED"):
            assert exp["value"] is None and exp["variant"] is None, (stem, case["name"])
        if exp["reason"] == "ERROR":
            assert exp["errorCode"] is not None, (stem, case["name"])
        else:
            assert exp.get("errorCode") is None, (stem, case["name"])


def test_a_redis_server_whose_port_is_taken_starts_on_another(tmp_path: Path) -> None:
    # A listener that accepts and never answers: a PING to it would hang, not fail.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([taken, taken])
        server = RedisServer(tmp_path / "redis", pick_port=lambda: next(picks, None) or free_port())
        server.start()
        try:
            assert server.port != taken
            with contextlib.closing(server.client()) as client:
                assert client.ping()
                assert int(client.info("server")["process_id"]) == server.process.pid
            # It really tried the taken port first, twice, and was told so each time.
            assert server.log.read_text().count("Address already in use") == 2
        finally:
            server.kill()


def test_a_restarted_redis_server_keeps_its_port_and_its_data_when_persistent(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path / "redis", persist=True).start()
    try:
        port = server.port
        with contextlib.closing(server.client()) as client:
            client.set("k", "v")
        server.restart()
        assert server.port == port
        with contextlib.closing(server.client()) as client:
            assert client.get("k") == b"v"
        server.restart(empty=True)
        assert server.port == port
        with contextlib.closing(server.client()) as client:
            assert client.get("k") is None
    finally:
        server.kill()


def test_starting_on_a_free_port_gives_up_after_a_bounded_number_of_tries() -> None:
    tried: list[int] = []

    def always_taken(port: int) -> None:
        tried.append(port)
        raise PortTaken(port)

    with pytest.raises(AssertionError, match="no free port after 3 tries"):
        on_a_free_port(always_taken, tries=3)
    assert len(tried) == 3
