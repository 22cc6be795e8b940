"""``flagedge serve --workers N`` (flagedge.serve.supervisor): the workers share the port and
all serve; a worker that dies is replaced while the others keep serving; a crash loop, or a
worker's bad configuration, stops the supervisor with exit 1 or 2; the serve options reach
every worker. Real processes, text logs."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import grpc
import pytest

from flagedge.client import Client
from tests.support.processes import SERVING_TEXT, ServeProcess


def test_two_workers_share_the_port_and_both_serve(flag_file: Path) -> None:
    server = ServeProcess(
        f"--flags={flag_file}", "--port=0", "--management-port=0", "--workers=2", text=True
    )
    try:
        first = server.next_line(SERVING_TEXT)
        second = server.next_line(SERVING_TEXT)
        assert first.group(1) != second.group(1), "two processes"
        assert first.group(2) == second.group(2), "one port"
        port = int(first.group(2))
        seen: set[str] = set()
        # Each new connection lands on one worker (the kernel picks); keep connecting until
        # both have answered. 200 tries make missing one by chance vanishingly unlikely.
        for _ in range(200):
            with Client(f"127.0.0.1:{port}") as client:
                event = next(client.watch())
                assert client.evaluate("switch").value is True
            seen.add(event.server_id.split("/")[1])
            if len(seen) == 2:
                break
        assert seen == {first.group(1), second.group(1)}
    finally:
        assert server.stop() == 0


def _serves(port: int) -> bool:
    with Client(f"127.0.0.1:{port}") as client:
        return client.evaluate("switch").value is True


def test_a_worker_that_dies_is_replaced_while_the_other_keeps_serving(flag_file: Path) -> None:
    server = ServeProcess(
        f"--flags={flag_file}", "--port=0", "--management-port=0", "--workers=2", text=True
    )
    try:
        first = server.next_line(SERVING_TEXT)
        second = server.next_line(SERVING_TEXT)
        port = int(first.group(2))
        os.kill(int(first.group(1)), signal.SIGKILL)
        server.next_line(rf"worker {first.group(1)} killed by SIGKILL; starting another in")
        assert _serves(port)  # the survivor answers meanwhile
        started = server.next_line(r"started worker (\d+) in place of one that died")
        again = server.next_line(SERVING_TEXT)
        assert again.group(1) == started.group(1)
        assert again.group(1) not in (first.group(1), second.group(1))
        assert again.group(2) == first.group(2), "the same port"
        assert _serves(port)
    finally:
        assert server.stop() == 0


def test_a_crash_loop_stops_the_supervisor_with_an_error(
    flag_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLAGEDGE_RESTART_BACKOFF", "0.01")
    server = ServeProcess(
        f"--flags={flag_file}", "--port=0", "--management-port=0", "--workers=2", text=True
    )
    try:
        victim = server.next_line(SERVING_TEXT).group(1)
        server.next_line(SERVING_TEXT)
        for _ in range(6):  # the crash limit is 5 deaths of one slot a minute
            os.kill(int(victim), signal.SIGKILL)
            found = server.next_line(
                r"started worker (\d+) in place of one that died|a crash loop; stopping"
            )
            if found.group(1) is None:
                break
            victim = found.group(1)
            server.next_line(rf"\[{victim}\] serving gRPC")
        else:
            raise AssertionError("the supervisor kept restarting")
        assert server.process.wait(30) == 1
    finally:
        server.stop()


def test_a_bad_flags_file_stops_every_worker_and_the_supervisor_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"flags": {"x": {"state": "ON"}}}))
    server = ServeProcess(
        f"--flags={bad}", "--port=0", "--management-port=0", "--workers=2", text=True
    )
    try:
        server.next_line(r"exited with 2 \(bad configuration\); stopping")
        assert server.process.wait(30) == 2
        assert not any("starting another" in line for line in server.log)
    finally:
        server.stop()


def test_the_stream_deadline_option_reaches_every_worker(flag_file: Path) -> None:
    from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as v2
    from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2_grpc as v2_grpc

    server = ServeProcess(
        f"--flags={flag_file}",
        "--port=0",
        "--management-port=0",
        "--workers=2",
        "--stream-deadline=0.3",
        text=True,
    )
    try:
        port = int(server.next_line(SERVING_TEXT).group(2))
        server.next_line(SERVING_TEXT)
        # Each new channel lands on one worker or the other (12 miss one with odds of 1 in
        # 2,048); the server must end every stream, before the client's own 10 s deadline.
        for _ in range(12):
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = v2_grpc.ServiceStub(channel)
                stream = stub.EventStream(v2.EventStreamRequest(), timeout=10)
                with pytest.raises(grpc.RpcError) as ended:
                    for _message in stream:
                        pass
                assert ended.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
                assert ended.value.details() == "stream closed due to server-side timeout"
    finally:
        assert server.stop() == 0
