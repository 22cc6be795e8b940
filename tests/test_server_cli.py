"""``flagedge serve`` as a real process: file reloads (in place and by rename), rejection of a
bad file while the last good flags keep serving, SIGTERM, and ``--workers 2``: workers that
die are replaced, a crash loop or a worker's bad configuration stops the supervisor."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from flagedge.client import Client

SERVING = re.compile(r"\[(\d+)\] serving gRPC on [^ ]+:(\d+), management on [^ ]+:(\d+)")


def flags(default: str) -> dict[str, Any]:
    return {
        "flags": {
            "switch": {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": default,
            }
        }
    }


class Server:
    """A ``flagedge serve`` child whose stderr lines are collected by a thread."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            # Text logs: these tests read the sentences (tests/test_operability.py reads JSON).
            [
                *(sys.executable, "-m", "flagedge", "serve"),
                *("--host=127.0.0.1", "--ofrep-port=0", "--log-format=text", *args),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str | re.Pattern[str]) -> re.Match[str]:
        """The next log line matching ``pattern`` (a generous bound, not a timing check)."""
        while True:
            try:
                line = self.lines.get(timeout=60)
            except queue.Empty:
                raise AssertionError(
                    f"no log line matched {pattern!r}:\n{''.join(self.log)}"
                ) from None
            self.log.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            self._pump_thread.join(10)
            if self.process.stderr is not None:
                self.process.stderr.close()


@pytest.fixture
def flag_file(tmp_path: Path) -> Path:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(flags("on")))
    return path


def replace_by_rename(path: Path, content: str) -> None:
    staging = path.with_suffix(".tmp")
    staging.write_text(content)
    os.replace(staging, path)


@pytest.fixture
def server(flag_file: Path) -> Iterator[tuple[Server, int]]:
    server = Server(
        f"--flags={flag_file}",
        "--port=0",
        "--management-port=0",
        "--workers=1",
        "--poll-interval=0.05",
    )
    port = int(server.wait_for(SERVING).group(2))
    yield server, port
    server.stop()


def test_the_served_file_reloads_on_rename_and_on_write(
    server: tuple[Server, int], flag_file: Path
) -> None:
    _, port = server
    with Client(f"127.0.0.1:{port}") as client:
        events = client.watch()
        assert next(events).initial
        assert client.evaluate("switch").value is True

        replace_by_rename(flag_file, json.dumps(flags("off")))
        change = next(events)
        assert (change.changed_keys, change.snapshot_version) == (("switch",), 2)
        assert client.evaluate("switch").value is False

        flag_file.write_text(json.dumps(flags("on")))
        assert next(events).snapshot_version == 3
        assert client.evaluate("switch").value is True


def test_an_invalid_file_is_rejected_and_the_last_good_flags_keep_serving(
    server: tuple[Server, int], flag_file: Path
) -> None:
    process, port = server
    broken = flags("nowhere")  # a defaultVariant naming no variant rejects the document
    replace_by_rename(flag_file, json.dumps(broken))
    process.wait_for("rejected .*flags.json.*nowhere")  # the problem itself is logged
    replace_by_rename(flag_file, "{ not json")
    process.wait_for("rejected .*flags.json")
    with Client(f"127.0.0.1:{port}") as client:
        result = client.evaluate("switch")
    assert (result.value, result.variant) == (True, "on")


def test_sigterm_drains_and_exits_cleanly(server: tuple[Server, int]) -> None:
    process, _ = server
    assert process.stop() == 0


def test_two_workers_share_the_port_and_both_serve(flag_file: Path) -> None:
    server = Server(f"--flags={flag_file}", "--port=0", "--management-port=0", "--workers=2")
    try:
        first = server.wait_for(SERVING)
        second = server.wait_for(SERVING)
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
    server = Server(f"--flags={flag_file}", "--port=0", "--management-port=0", "--workers=2")
    try:
        first = server.wait_for(SERVING)
        second = server.wait_for(SERVING)
        port = int(first.group(2))
        os.kill(int(first.group(1)), signal.SIGKILL)
        server.wait_for(rf"worker {first.group(1)} killed by SIGKILL; starting another in")
        assert _serves(port)  # the survivor answers meanwhile
        started = server.wait_for(r"started worker (\d+) in place of one that died")
        again = server.wait_for(SERVING)
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
    server = Server(f"--flags={flag_file}", "--port=0", "--management-port=0", "--workers=2")
    try:
        victim = server.wait_for(SERVING).group(1)
        server.wait_for(SERVING)
        for _ in range(6):  # the crash limit is 5 deaths of one slot a minute
            os.kill(int(victim), signal.SIGKILL)
            found = server.wait_for(
                r"started worker (\d+) in place of one that died|a crash loop; stopping"
            )
            if found.group(1) is None:
                break
            victim = found.group(1)
            server.wait_for(rf"\[{victim}\] serving gRPC")
        else:
            raise AssertionError("the supervisor kept restarting")
        assert server.process.wait(30) == 1
    finally:
        server.stop()


def test_a_bad_flags_file_stops_every_worker_and_the_supervisor_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"flags": {"x": {"state": "ON"}}}))
    server = Server(f"--flags={bad}", "--port=0", "--management-port=0", "--workers=2")
    try:
        server.wait_for(r"exited with 2 \(bad configuration\); stopping")
        assert server.process.wait(30) == 2
        assert not any("starting another" in line for line in server.log)
    finally:
        server.stop()


def test_the_stream_deadline_option_reaches_every_worker(flag_file: Path) -> None:
    from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as v2
    from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2_grpc as v2_grpc

    server = Server(
        f"--flags={flag_file}",
        "--port=0",
        "--management-port=0",
        "--workers=2",
        "--stream-deadline=0.3",
    )
    try:
        port = int(server.wait_for(SERVING).group(2))
        server.wait_for(SERVING)
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
