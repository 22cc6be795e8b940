"""A lean gRPC unary client for latency probes: raw HTTP/2 frames on a blocking socket.

    probe = UnaryProbe("127.0.0.1", 8013, "/flagedge.v1.Evaluation/Evaluate", request_bytes)
    answer = probe.call()       # the response message's bytes
    probe.close()

    python -m benchmarks.h2probe --target 127.0.0.1:8013 --server-pid PID
        # isolated calls: round trip, and client and server CPU per call

Why it exists. The propagation benchmark polls every edge every 0.5 ms while a change is in
flight, and drives the edges' load. grpcio's Python client spends about 180 µs of CPU per
unary call on the 2-core development machine, so the instruments would take most of a core
away from the very edges being measured. This client builds its request frames once (HPACK
with literal headers, no dynamic table, nothing to keep in step) and per call only sends
them and reads frames back: about a third of grpcio's CPU per call, over the same HTTP/2
connection semantics and against the same, unmodified gRPC server.

It is a probe, not a general client: one fixed request per connection, sent as often as
asked (UnaryProbe waits for each answer; H2Connection pipelines them, for the load), unary
only, no TLS, no compression, no deadlines on the wire (the socket timeout bounds a call).
A call succeeds only when the server sends a response message; a call that ends without
one (a gRPC error answered trailers-only), a reset stream or a GOAWAY raises ProbeError.
Response headers and trailers are not decoded. Settings and pings are acknowledged, and the
connection's receive window is topped up as responses arrive.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
_WINDOW_UPDATE = 0x8
_END_STREAM, _ACK, _END_HEADERS, _PADDED = 0x1, 0x1, 0x4, 0x8
_WINDOW_TOP_UP = 1 << 15  # send a WINDOW_UPDATE once this many DATA bytes came in


class ProbeError(Exception):
    """The call did not produce a response message."""


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes((kind, flags))
        + struct.pack(">I", stream)
        + payload
    )


def _literal(name: bytes, value: bytes) -> bytes:
    """An HPACK 'literal header field without indexing' (RFC 7541 §6.2.2), no Huffman coding.
    ``name`` is the already encoded name part: a static-table index prefix or a literal name."""
    if len(value) >= 127:
        raise ValueError("header value too long for this probe")
    return name + bytes((len(value),)) + value


def header_block(authority: str, path: str) -> bytes:
    """The request headers of a gRPC unary call, HPACK-encoded without state."""
    return (
        b"\x83"  # :method POST (static table index 3)
        + b"\x86"  # :scheme http (index 6)
        + _literal(b"\x04", path.encode())  # :path (name index 4)
        + _literal(b"\x01", authority.encode())  # :authority (name index 1)
        + _literal(b"\x0f\x10", b"application/grpc")  # content-type (name index 31)
        + _literal(b"\x00\x02te", b"trailers")  # te, a new name
    )


class H2Connection:
    """One HTTP/2 connection that sends one fixed unary request, as many times as asked,
    each on a new stream, and reads the answers back."""

    def __init__(
        self, host: str, port: int, path: str, request: bytes, *, timeout: float = 5.0
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._request = _frame(_HEADERS, _END_HEADERS, 0, header_block(f"{host}:{port}", path))
        data = b"\x00" + struct.pack(">I", len(request)) + request
        self._data = _frame(_DATA, _END_STREAM, 0, data)
        self._next = 1
        self._buffer = bytearray()
        self._received = 0  # DATA bytes not yet returned to the connection window
        self._messages: dict[int, bytes] = {}
        self.sock.sendall(_PREFACE + _frame(_SETTINGS, 0, 0))

    def send(self) -> int:
        """Start a call; return its stream id."""
        stream = self._next
        if stream > 0x7FFFFFFF:
            raise ProbeError("stream ids exhausted; open a new connection")
        self._next += 2
        sid = struct.pack(">I", stream)
        # The frames were built for stream 0: patch the stream id in (bytes 5-8 of each).
        headers, data = self._request, self._data
        self.sock.sendall(headers[:5] + sid + headers[9:] + data[:5] + sid + data[9:])
        return stream

    def receive(self, block: bool = True) -> list[tuple[int, bytes | None]]:
        """Read what has arrived (waiting for something when ``block``); return the calls
        that ended, as (stream id, response message, or None when there was none)."""
        if block or not self._buffer:
            # (MSG_DONTWAIT would not do: a socket with a timeout polls before it reads.)
            if not block and not select.select([self.sock], [], [], 0)[0]:
                return []
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ProbeError("the server closed the connection")
            self._buffer += chunk
        ended: list[tuple[int, bytes | None]] = []
        buffer = self._buffer
        while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
            size = int.from_bytes(buffer[:3], "big")
            kind, flags = buffer[3], buffer[4]
            sid = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
            payload = bytes(buffer[9 : 9 + size])
            del buffer[: 9 + size]
            if kind == _DATA:
                self._received += size
                if self._received >= _WINDOW_TOP_UP:
                    update = struct.pack(">I", self._received)
                    self.sock.sendall(_frame(_WINDOW_UPDATE, 0, 0, update))
                    self._received = 0
                if flags & _PADDED:
                    payload = payload[1 : len(payload) - payload[0]]
                if len(payload) >= 5:
                    if payload[0]:
                        raise ProbeError("compressed responses are not supported")
                    self._messages[sid] = payload[5 : 5 + int.from_bytes(payload[1:5], "big")]
            elif kind == _SETTINGS and not flags & _ACK:
                self.sock.sendall(_frame(_SETTINGS, _ACK, 0))
            elif kind == _PING and not flags & _ACK:
                self.sock.sendall(_frame(_PING, _ACK, 0, payload))
            elif kind == _GOAWAY:
                raise ProbeError("the server sent GOAWAY")
            elif kind == _RST_STREAM:
                ended.append((sid, self._messages.pop(sid, None)))
                continue
            if sid and flags & _END_STREAM and kind in (_DATA, _HEADERS):
                ended.append((sid, self._messages.pop(sid, None)))
        return ended

    def close(self) -> None:
        self.sock.close()


class UnaryProbe:
    """One call at a time: ``call()`` returns the response message, or raises ProbeError."""

    def __init__(
        self, host: str, port: int, path: str, request: bytes, *, timeout: float = 5.0
    ) -> None:
        self._conn = H2Connection(host, port, path, request, timeout=timeout)

    def call(self) -> bytes:
        stream = self._conn.send()
        while True:
            for sid, message in self._conn.receive():
                if sid == stream:
                    if message is None:
                        raise ProbeError("the call ended without a response message")
                    return message

    def close(self) -> None:
        self._conn.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: Sequence[str] | None = None) -> int:
    """Isolated calls, one at a time: round trip, and the CPU each side spends per call."""
    parser = argparse.ArgumentParser(
        description="One gRPC unary call at a time through the probe: latency and CPU per call"
    )
    parser.add_argument("--target", required=True, help="HOST:PORT of a flagedge server")
    parser.add_argument("--flag", default="new-checkout", help="the flag Evaluate asks for")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--server-pid", type=int, help="charge this process its CPU time")
    args = parser.parse_args(argv)
    from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb

    host, _, port = args.target.rpartition(":")
    request = pb.EvaluateRequest(flag_key=args.flag).SerializeToString()
    probe = UnaryProbe(host, int(port), "/flagedge.v1.Evaluation/Evaluate", request)
    answer = pb.EvaluateResponse.FromString(probe.call())
    if answer.result.error_code:
        raise SystemExit(f"{args.flag}: {answer.result.error_message or answer.result.error_code}")
    for _ in range(min(500, args.calls)):  # warm up
        probe.call()
    server_start = _cpu_seconds(args.server_pid) if args.server_pid else 0.0
    client_start = time.process_time()
    times = []
    for _ in range(args.calls):
        start = time.perf_counter()
        probe.call()
        times.append(time.perf_counter() - start)
    client = (time.process_time() - client_start) / args.calls
    times.sort()
    line = (
        f"{args.calls} calls: round trip p50 {times[len(times) // 2] * 1e6:.0f} µs, "
        f"p99 {times[int(len(times) * 0.99)] * 1e6:.0f} µs; client CPU {client * 1e6:.0f} µs/call"
    )
    if args.server_pid:
        server = (_cpu_seconds(args.server_pid) - server_start) / args.calls
        line += f"; server CPU {server * 1e6:.0f} µs/call"
    print(line)
    probe.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
