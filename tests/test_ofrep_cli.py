"""OFREP from the real ``flagedge serve``: the startup line names the port, the README's
curl calls answer, workers share the port, and a taken port stops serve with exit 2."""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.cli import flagctl
from tests.support.documents import switch
from tests.support.ports import free_port
from tests.support.processes import SERVING_TEXT, Edge, ServeProcess
from tests.support.redis_server import RedisServer

# The startup line: gRPC and management first (the regex other tools read), then the rest.
OFREP = re.compile(
    r"\[(\d+)\] serving gRPC on [^ ]+:\d+, management on [^ ]+:\d+,.* OFREP on [^ ]+:(\d+)"
)


def serve(*args: str) -> ServeProcess:
    """``flagedge serve ARGS`` with text logs (the startup sentence is what is read)."""
    return ServeProcess(*args, text=True)


def call(port: int, path: str, body: Any, **headers: str) -> tuple[int, Any, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            data = response.read()
            return response.status, json.loads(data) if data else None, response.headers
    except urllib.error.HTTPError as exc:
        data = exc.read()
        return exc.code, json.loads(data) if data else None, exc.headers


def test_serve_answers_the_readme_calls_on_its_ofrep_port(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(switch("on")))
    port = free_port()
    server = serve(
        f"--flags={path}", "--port=0", "--management-port=0", "--workers=1", f"--ofrep-port={port}"
    )
    try:
        line = server.next_line(OFREP)
        assert int(line.group(2)) == port
        assert SERVING_TEXT.search(line.string)  # the older regex still reads the line
        status, one, _ = call(
            port, "/ofrep/v1/evaluate/flags/switch", {"context": {"targetingKey": "user-7"}}
        )
        assert status == 200 and one["value"] is True and one["variant"] == "on"
        status, bulk, headers = call(port, "/ofrep/v1/evaluate/flags", {"context": {}})
        assert status == 200 and [f["key"] for f in bulk["flags"]] == ["switch"]
        again, body, _ = call(
            port, "/ofrep/v1/evaluate/flags", {"context": {}}, **{"If-None-Match": headers["ETag"]}
        )
        assert (again, body) == (304, None)
    finally:
        assert server.stop() == 0


def test_two_workers_share_the_ofrep_port(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(switch("on")))
    port = free_port()
    server = serve(
        f"--flags={path}", "--port=0", "--management-port=0", "--workers=2", f"--ofrep-port={port}"
    )
    try:
        first, second = server.next_line(OFREP), server.next_line(OFREP)
        assert first.group(1) != second.group(1)
        assert int(first.group(2)) == int(second.group(2)) == port
        for _ in range(20):
            assert call(port, "/ofrep/v1/evaluate/flags/switch", {})[0] == 200
    finally:
        assert server.stop() == 0


def test_a_taken_ofrep_port_stops_serve_with_exit_2_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(switch("on")))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = serve(
            f"--flags={path}",
            "--port=0",
            "--management-port=0",
            "--workers=1",
            f"--ofrep-port={port}",
        )
        server.next_line(r"cannot bind HTTP port 127\.0\.0\.1:\d+")
        assert server.stop() == 2


def _next_data(stream: Any) -> dict[str, Any]:
    while True:
        line = stream.readline()
        if not line:
            raise AssertionError("the event stream ended")
        if line.startswith(b"data:"):
            return dict(json.loads(line[5:]))


def test_a_kill_switch_reaches_an_ofrep_event_stream_and_the_refetch_sees_it(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(switch("on")))
    assert flagctl("push", str(path), "--redis", redis_server.url, "--env", "ofrep")[0] == 0
    port = free_port()
    edge = Edge(redis_server.url, "ofrep", tmp_path / "lkg.json", f"--ofrep-port={port}")
    edge.wait_serving()
    try:
        status, before, headers = call(port, "/ofrep/v1/evaluate/flags", {"context": {}})
        assert status == 200 and before["flags"][0]["value"] is True
        events = urllib.request.urlopen(f"http://127.0.0.1:{port}/ofrep/v1/events", timeout=30)
        assert events.readline().startswith(b": ")  # subscribed
        code, _, err = flagctl("kill", "switch", "--redis", redis_server.url, "--env", "ofrep")
        assert code == 0, err
        event = _next_data(events)
        events.close()
        assert event["type"] == "refetchEvaluation"
        status, after, _ = call(
            port,
            f"/ofrep/v1/evaluate/flags?flagConfigEtag={event['etag']}",
            {"context": {}},
            **{"If-None-Match": headers["ETag"]},
        )
        assert status == 200 and after["flags"][0]["reason"] == "DISABLED"
    finally:
        assert edge.stop() == 0
