"""The lean HTTP/2 gRPC client of the propagation benchmark, against a real `flagedge serve`:
it must read exactly what grpcio reads, fail on a failed call, and keep a long-lived
connection going (stream ids, flow control). Correctness only; never timed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from benchmarks.h2probe import H2Connection, ProbeError, UnaryProbe
from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as flagd_pb
from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb
from flagedge.bench.workloads import mixed_context, mixed_doc

SERVING = re.compile(r"serving gRPC on [^ ]+:(\d+), management")
EVALUATE = "/flagedge.v1.Evaluation/Evaluate"


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    flags = tmp_path_factory.mktemp("probe") / "flags.json"
    flags.write_text(json.dumps(mixed_doc(50)))
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "flagedge", "serve", f"--flags={flags}"),
            *("--host=127.0.0.1", "--port=0", "--management-port=0", "--sync-port=any"),
            "--ofrep-port=0",
            "--workers=1",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    found = None
    for line in process.stderr:
        found = SERVING.search(line)
        if found:
            break
    assert found, "the server did not start"
    drain = threading.Thread(target=lambda: [None for _ in process.stderr or ()], daemon=True)
    drain.start()
    yield int(found.group(1))
    process.terminate()
    process.wait(15)
    drain.join(15)  # the pipe is at its end once the server has exited
    process.stderr.close()


def _targeted_request() -> pb.EvaluateRequest:
    doc = mixed_doc(50)
    key = next(k for k, f in doc["flags"].items() if "targeting" in f)
    request = pb.EvaluateRequest(flag_key=key)
    request.context.update(mixed_context())
    return request


def test_the_probe_reads_what_grpcio_reads(port: int) -> None:
    request = _targeted_request()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        expected = channel.unary_unary(EVALUATE, request_serializer=None)(
            request.SerializeToString(), timeout=5
        )
        resolve = "/flagd.evaluation.v2.Service/ResolveBoolean"
        flagd_request = flagd_pb.ResolveBooleanRequest(flag_key="no-such-flag")
        flagd_expected = channel.unary_unary(resolve, request_serializer=None)
        with pytest.raises(grpc.RpcError) as failed:
            flagd_expected(flagd_request.SerializeToString(), timeout=5)
        assert failed.value.code() is grpc.StatusCode.NOT_FOUND
    probe = UnaryProbe("127.0.0.1", port, EVALUATE, request.SerializeToString())
    try:
        answer = probe.call()
        assert answer == expected
        decoded = pb.EvaluateResponse.FromString(answer)
        assert decoded.result.key == request.flag_key and decoded.result.variant
        assert probe.call() == expected  # the same connection, a new stream
    finally:
        probe.close()
    # A gRPC error (no response message, only trailers) is an error for the probe too.
    failing = UnaryProbe("127.0.0.1", port, resolve, flagd_request.SerializeToString())
    try:
        with pytest.raises(ProbeError):
            failing.call()
    finally:
        failing.close()


def test_an_unknown_method_fails_and_the_connection_stays_usable(port: int) -> None:
    conn = H2Connection("127.0.0.1", port, "/flagedge.v1.Evaluation/NoSuchMethod", b"")
    try:
        stream = conn.send()
        ended: list[tuple[int, bytes | None]] = []
        while not ended:
            ended = conn.receive()
        assert ended == [(stream, None)]
    finally:
        conn.close()


def test_pipelined_calls_all_answer_past_the_initial_flow_control_window(port: int) -> None:
    request = _targeted_request().SerializeToString()
    conn = H2Connection("127.0.0.1", port, EVALUATE, request)
    try:
        sent: set[int] = set()
        answers: dict[int, bytes | None] = {}
        # Each answer is over 30 bytes: 6,000 of them pass HTTP/2's initial 65,535-byte
        # connection window several times, which only works if the probe tops it up.
        for _ in range(60):
            sent.update(conn.send() for _ in range(100))
            while len(answers) < len(sent):
                answers.update(conn.receive())
        assert set(answers) == sent and len(sent) == 6000
        assert sum(len(a or b"") for a in answers.values()) > 3 * 65_535
        first = next(iter(answers.values()))
        assert first and all(a == first for a in answers.values())
    finally:
        conn.close()


def test_a_receive_that_does_not_block_returns_at_once_when_nothing_came(port: int) -> None:
    request = _targeted_request().SerializeToString()
    conn = H2Connection("127.0.0.1", port, EVALUATE, request, timeout=30)
    try:
        while conn.receive(block=False):  # the server's SETTINGS, if already there
            pass
        start = time.monotonic()
        assert conn.receive(block=False) == []
        assert time.monotonic() - start < 15  # it did not wait out the socket's 30 s timeout
        stream = conn.send()
        ended: list[tuple[int, bytes | None]] = []
        while not ended:
            ended = conn.receive(block=False)
        assert ended[0][0] == stream and ended[0][1]
    finally:
        conn.close()


def test_the_probe_reports_a_closed_server() -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        probe_port = listener.getsockname()[1]
        probe = UnaryProbe("127.0.0.1", probe_port, EVALUATE, b"")
        accepted, _ = listener.accept()
        accepted.close()  # the "server" hangs up without answering
        try:
            with pytest.raises((ProbeError, OSError)):
                probe.call()
        finally:
            probe.close()
