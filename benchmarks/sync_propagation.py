"""Propagation to in-process providers over flagd's sync service: from a Redis write until
in-process providers answer it, and until the last of many SyncFlags streams receives it.

    python -m benchmarks.sync_propagation                      # 3 providers, 500 streams
    python -m benchmarks.sync_propagation --providers 3 --flips 200 --streams 0
    python -m benchmarks.sync_propagation --providers 0 --streams 500 --stream-flips 50

What it starts (loopback only, every process bounded and stopped at the end): one
redis-server on a free port in a temporary directory, one ``flagedge serve --redis`` edge
(--sync-port any), then for each run its clients.

A flip is one control-plane write, the Lua script the CLI runs (RedisAdmin.write; the CLI's
validation before it is not timed): a kill switch forcing ``switch`` to ``off``, then its
removal, alternately, in a set of --flags flags plus the switch (default 200 + 1, the
document of benchmarks/propagation.py). The clock starts just before the write. Times come
from CLOCK_MONOTONIC, which every process on the machine shares. The next flip waits until
every client has seen this one, plus a small random gap.

providers   N children (benchmarks/sync_provider.py), each the OpenFeature SDK with the flagd
            provider in IN_PROCESS mode on the edge's sync port. The clock stops when a
            provider, woken by its configuration-change event, answers the new value through
            the SDK. Every flip sends each provider the whole configuration, which it parses
            and loads into its evaluator: that is the sync protocol's cost, and it is timed.
streams     S SyncFlags streams held by P client processes (grpc.aio, several channels each,
            messages left undecoded: the client finds the switch's defaultVariant in the raw
            bytes). The clock stops for each stream when its message arrives; a flip's figure
            is its last stream's.

Everything shares the machine, so on two cores the clients' own CPU is in the figures (500
streams' messages are 500 copies of the configuration, each received by Python code).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.propagation import FLAG, _percentile, threading_drain
from benchmarks.scratch import free_port, push, redis_command, wait_for_redis, with_switch

SYNC_PORT = re.compile(r'"sync_port":\s*(\d+)')
METHOD = "/flagd.sync.v1.FlagSyncService/SyncFlags"
# Where the switch's answer sits in a message: "defaultVariant":"on" or "defaultVariant":"off".
MARK = b'"' + FLAG.encode() + b'":{"state":"ENABLED","defaultVariant":"o'


def _document(flags: int) -> dict[str, Any]:
    from flagedge.bench.workloads import mixed_doc

    return with_switch(mixed_doc(flags), FLAG)


# -- the streams children ----------------------------------------------------------------------


class _Notes:
    """What a stream client records: per stream, the switch's last value and, for each flip,
    when the first message showing it arrived."""

    def __init__(self, first: int, flips: int, seen: Any, stamps: Any) -> None:
        self.first, self.flips, self.seen, self.stamps = first, flips, seen, stamps
        self.last: dict[int, bytes] = {}

    def message(self, i: int, message: bytes) -> None:
        now = time.monotonic_ns()
        at = message.find(MARK) + len(MARK)
        value = message[at : at + 1]  # b"n" (on) or b"f" (off)
        s = self.first + i
        last = self.last.get(i)
        k = self.seen[s]
        if last is None:
            self.seen[s] = 0  # ready: the value before the first flip is known
        elif value != last and 0 <= k < self.flips:
            self.stamps[s * self.flips + k] = now
            self.seen[s] = k + 1
        self.last[i] = value


def _streams_grpcio(
    port: int, count: int, channels: int, first: int, flips: int, seen: Any, stamps: Any, stop: Any
) -> None:
    """``count`` SyncFlags streams over ``channels`` grpc.aio connections; stream i of this
    process is stream ``first + i`` of the run."""
    import asyncio

    import grpc

    notes = _Notes(first, flips, seen, stamps)

    async def follow(channel: grpc.aio.Channel, i: int) -> None:
        async for message in channel.unary_stream(METHOD)(b""):
            notes.message(i, message)

    async def main() -> None:
        opened = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(channels)]
        tasks = [asyncio.ensure_future(follow(opened[i % channels], i)) for i in range(count)]
        while not stop.value:
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in opened:
            await channel.close(None)

    asyncio.run(main())


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload
    )


def _streams_probe(
    port: int, count: int, channels: int, first: int, flips: int, seen: Any, stamps: Any, stop: Any
) -> None:
    """The same streams on raw HTTP/2 (the idea of benchmarks/h2probe.py, for server
    streams): one thread, non-blocking sockets, each connection's and stream's receive
    window opened to 2^31-1 at the start (far more than a run receives), frames parsed only
    as far as DATA needs. About a tenth of grpc.aio's CPU per message, so the edge keeps the
    cores."""
    import selectors
    import socket

    from benchmarks.h2probe import header_block

    notes = _Notes(first, flips, seen, stamps)
    big = 0x7FFFFFFF
    settings = (4).to_bytes(2, "big") + big.to_bytes(4, "big")  # SETTINGS_INITIAL_WINDOW_SIZE
    opening = (
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + _h2_frame(0x4, 0, 0, settings)
        + _h2_frame(0x8, 0, 0, (big - 65535).to_bytes(4, "big"))  # the connection's window
    )
    request = b"\x00" + (0).to_bytes(4, "big")  # an empty SyncFlagsRequest
    selector = selectors.DefaultSelector()
    streams: dict[tuple[int, int], int] = {}  # (connection, stream id) -> stream index
    for c in range(channels):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        headers = header_block(f"127.0.0.1:{port}", METHOD)
        out = bytearray(opening)
        for n, i in enumerate(range(c, count, channels)):
            sid = 1 + 2 * n
            streams[(c, sid)] = i
            out += _h2_frame(0x1, 0x4, sid, headers) + _h2_frame(0x0, 0x1, sid, request)
        sock.sendall(out)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, (c, bytearray(), {}))
    while not stop.value:
        for key, _ in selector.select(0.05):
            sock = key.fileobj
            c, buffer, partial = key.data
            try:
                chunk = sock.recv(1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                raise RuntimeError("the edge closed a connection")
            buffer += chunk
            while len(buffer) >= 9:
                size = int.from_bytes(buffer[:3], "big")
                if len(buffer) < 9 + size:
                    break
                kind, flags = buffer[3], buffer[4]
                sid = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
                payload = bytes(buffer[9 : 9 + size])
                del buffer[: 9 + size]
                if kind == 0x0:  # DATA: gRPC messages, split across frames at will
                    if flags & 0x8:
                        payload = payload[1 : len(payload) - payload[0]]
                    pending = partial.setdefault(sid, bytearray())
                    pending += payload
                    while len(pending) >= 5:
                        length = int.from_bytes(pending[1:5], "big")
                        if len(pending) < 5 + length:
                            break
                        notes.message(streams[(c, sid)], bytes(pending[5 : 5 + length]))
                        del pending[: 5 + length]
                elif kind == 0x4 and not flags & 0x1:
                    sock.sendall(_h2_frame(0x4, 0x1, 0))
                elif kind == 0x6 and not flags & 0x1:
                    sock.sendall(_h2_frame(0x6, 0x1, 0, payload))
                elif kind in (0x3, 0x7) or (kind == 0x1 and flags & 0x1 and sid):
                    raise RuntimeError(f"a stream ended (frame type {kind})")
    for key in list(selector.get_map().values()):
        key.fileobj.close()


STREAM_CLIENTS = {"probe": _streams_probe, "grpcio": _streams_grpcio}


# -- the runs -----------------------------------------------------------------------------------


def _flip(admin: Any) -> int:
    """Turn the switch over: kill it to ``off`` when it has no override, else remove the
    override. Decided from what Redis holds, so that a run can follow another whatever
    state the last one left (a run that ended on a kill would otherwise begin with a write
    that changes nothing, and wait for clients that have nothing to see)."""
    from flagedge.model import Override, OverrideKind
    from flagedge.store.plane import ChangeKind, Write

    state = admin.read()
    ov = None if FLAG in state.overrides else Override(OverrideKind.KILL, "off")
    write = Write(state.version, ChangeKind.OVERRIDE, "bench", "flip", flag=FLAG, override=ov)
    t0 = time.monotonic_ns()
    assert admin.write(write).ok
    return t0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and its children so far (Linux /proc):
    an edge with --workers is a supervisor and its workers."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    total = 0.0
    for each in (pid, *map(int, children)):
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _drive(
    admin: Any,
    seen: Any,
    clients: int,
    flips: int,
    gap: tuple[float, float],
    timeout: float,
    edge_pid: int,
) -> tuple[list[int], float]:
    """Flip ``flips`` times once every client is ready; the write times, and the edge's CPU
    per flip (ms, the gaps' idle included)."""
    deadline = time.monotonic() + 120
    while any(seen[c] < 0 for c in range(clients)):
        if time.monotonic() > deadline:
            raise RuntimeError("the clients did not connect")
        time.sleep(0.02)
    time.sleep(0.5)
    started = []
    cpu = _cpu_seconds(edge_pid)
    for i in range(flips):
        started.append(_flip(admin))
        deadline = time.monotonic() + timeout
        while any(seen[c] <= i for c in range(clients)):
            if time.monotonic() > deadline:
                late = sum(1 for c in range(clients) if seen[c] <= i)
                raise RuntimeError(f"flip {i} did not reach {late} client(s) in {timeout} s")
            time.sleep(0.0005)
        time.sleep(random.uniform(*gap))
    return started, (_cpu_seconds(edge_pid) - cpu) * 1e3 / flips


def _summary(latency: list[list[float]], flips: int) -> dict[str, Any]:
    every = sorted(x for per in latency for x in per)
    last = sorted(max(per[i] for per in latency) for i in range(flips))
    return {
        "clients": len(latency),
        "flips": flips,
        "p50_ms": round(statistics.median(every), 3),
        "p99_ms": round(_percentile(every, 0.99), 3),
        "max_ms": round(every[-1], 3),
        "last_p50_ms": round(statistics.median(last), 3),
        "last_p99_ms": round(_percentile(last, 0.99), 3),
        "last_max_ms": round(last[-1], 3),
    }


def measure_providers(
    admin: Any, port: int, providers: int, flips: int, edge_pid: int
) -> dict[str, Any]:
    from benchmarks import sync_provider

    ctx = multiprocessing.get_context("spawn")
    seen = ctx.Array("i", [-1] * providers, lock=False)
    stamps = ctx.Array("q", providers * flips, lock=False)
    arrivals = ctx.Array("q", providers * flips, lock=False)
    stop = ctx.Value("i", 0, lock=False)
    children = [
        ctx.Process(
            target=sync_provider.run,
            args=(port, FLAG, p, flips, seen, stamps, arrivals, stop),
            daemon=True,
        )
        for p in range(providers)
    ]
    for child in children:
        child.start()
    try:
        started, cpu = _drive(admin, seen, providers, flips, (0.002, 0.01), 10, edge_pid)
    finally:
        stop.value = 1
        _end(children)
    latency = [
        [(stamps[p * flips + i] - started[i]) / 1e6 for i in range(flips)] for p in range(providers)
    ]
    # The hops: write -> the message reaches the provider; then -> the provider answers.
    arrive = sorted(
        (arrivals[p * flips + i] - started[i]) / 1e6 for p in range(providers) for i in range(flips)
    )
    load = sorted((stamps[k] - arrivals[k]) / 1e6 for k in range(providers * flips))
    return {
        "run": "providers",
        **_summary(latency, flips),
        "arrival_p50_ms": round(statistics.median(arrive), 3),
        "arrival_p99_ms": round(_percentile(arrive, 0.99), 3),
        "provider_load_p50_ms": round(statistics.median(load), 3),
        "provider_load_p99_ms": round(_percentile(load, 0.99), 3),
        "edge_cpu_ms_per_flip": round(cpu, 2),
    }


def measure_streams(
    admin: Any,
    port: int,
    streams: int,
    flips: int,
    procs: int,
    channels: int,
    edge_pid: int,
    client: str = "probe",
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    seen = ctx.Array("i", [-1] * streams, lock=False)
    stamps = ctx.Array("q", streams * flips, lock=False)
    stop = ctx.Value("i", 0, lock=False)
    share = [streams // procs + (1 if p < streams % procs else 0) for p in range(procs)]
    firsts = [sum(share[:p]) for p in range(procs)]
    children = [
        ctx.Process(
            target=STREAM_CLIENTS[client],
            args=(port, share[p], channels, firsts[p], flips, seen, stamps, stop),
            daemon=True,
        )
        for p in range(procs)
        if share[p]
    ]
    for child in children:
        child.start()
    try:
        started, cpu = _drive(admin, seen, streams, flips, (0.02, 0.05), 30, edge_pid)
    finally:
        stop.value = 1
        _end(children)
    latency = [
        [(stamps[s * flips + i] - started[i]) / 1e6 for i in range(flips)] for s in range(streams)
    ]
    first = sorted(min(per[i] for per in latency) for i in range(flips))
    return {
        "run": "streams",
        **_summary(latency, flips),
        "first_p50_ms": round(statistics.median(first), 3),
        "client": client,
        "client_processes": len(children),
        "channels_per_process": channels,
        "edge_cpu_ms_per_flip": round(cpu, 2),
    }


def _end(children: Sequence[Any]) -> None:
    for child in children:
        child.join(15)
    for child in children:
        if child.is_alive():
            child.kill()
            child.join()


def run(
    flags: int = 200,
    providers: int = 3,
    flips: int = 100,
    streams: int = 500,
    stream_flips: int = 30,
    stream_procs: int = 2,
    channels: int = 10,
    client: str = "probe",
    workers: int = 1,
) -> dict[str, Any]:
    from flagedge.store.redis import RedisAdmin, parse_target

    tmp = Path(tempfile.mkdtemp(prefix="flagedge-sync-propagation-"))
    port = free_port()
    processes: list[subprocess.Popen[Any]] = []
    try:
        processes.append(subprocess.Popen(redis_command(port, tmp), stdout=subprocess.DEVNULL))
        url = f"redis://127.0.0.1:{port}"
        admin = RedisAdmin(parse_target(url), "bench")
        wait_for_redis(admin)
        document = _document(flags)
        push(admin, document)
        edge = subprocess.Popen(
            [
                *(sys.executable, "-m", "flagedge", "serve", "--host=127.0.0.1"),
                *("--port=0", "--management-port=0", "--sync-port=any", "--ofrep-port=0"),
                f"--workers={workers}",
                *(f"--redis={url}", "--env=bench", f"--lkg-file={tmp / 'lkg.json'}"),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(edge)
        assert edge.stderr is not None
        started = 0  # every worker says it serves before the clients connect
        for line in edge.stderr:
            found = SYNC_PORT.search(line)
            if found:
                sync_port = int(found.group(1))
                started += 1
                if started == workers:
                    break
        else:
            raise RuntimeError("the edge did not start")
        threading_drain(edge)
        results: dict[str, Any] = {
            "cpus": os.cpu_count(),
            "edge_workers": workers,
            "flags": len(document["flags"]),
            "message_bytes": _message_size(document),
            "runs": [],
        }
        if providers > 0:
            results["runs"].append(measure_providers(admin, sync_port, providers, flips, edge.pid))
        if streams > 0:
            results["runs"].append(
                measure_streams(
                    admin,
                    sync_port,
                    streams,
                    stream_flips,
                    stream_procs,
                    channels,
                    edge.pid,
                    client,
                )
            )
        admin.close()
        return results
    finally:
        for p in reversed(processes):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in processes:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stderr is not None:
                p.stderr.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _message_size(document: dict[str, Any]) -> int:
    from flagedge.server.selector import ALL
    from flagedge.server.sync import Renderings
    from flagedge.snapshot import Snapshot

    return len(Renderings("redis:bench", {}).get(Snapshot.build(document), ALL).sync_message)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flags", type=int, default=200, help="flags besides the switch")
    parser.add_argument("--providers", type=int, default=3, help="0: no provider run")
    parser.add_argument("--flips", type=int, default=100, help="flips of the provider run")
    parser.add_argument("--streams", type=int, default=500, help="0: no stream run")
    parser.add_argument("--stream-flips", type=int, default=30)
    parser.add_argument("--stream-procs", type=int, default=2, help="client processes")
    parser.add_argument("--channels", type=int, default=10, help="connections per process")
    parser.add_argument(
        "--client",
        choices=sorted(STREAM_CLIENTS),
        default="probe",
        help="the stream run's client: raw HTTP/2 (probe) or grpc.aio",
    )
    parser.add_argument("--workers", type=int, default=1, help="the edge's --workers")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = run(
        args.flags,
        args.providers,
        args.flips,
        args.streams,
        args.stream_flips,
        args.stream_procs,
        args.channels,
        args.client,
        args.workers,
    )
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"sync propagation, {results['flags']} flags ({results['message_bytes']} bytes a "
        f"message), edge --workers {results['edge_workers']}, {results['cpus']} CPUs"
    )
    print("  run         clients  flips   p50 ms   p99 ms   max ms   last-client p50/p99/max ms")
    for r in results["runs"]:
        print(
            f"  {r['run']:<11} {r['clients']:>7} {r['flips']:>6} {r['p50_ms']:>8.3f} "
            f"{r['p99_ms']:>8.3f} {r['max_ms']:>8.3f}   {r['last_p50_ms']:.3f} / "
            f"{r['last_p99_ms']:.3f} / {r['last_max_ms']:.3f}"
        )
        if r["run"] == "providers":
            print(
                f"    hops: write -> message at the provider p50 {r['arrival_p50_ms']:.3f} / p99 "
                f"{r['arrival_p99_ms']:.3f} ms; then parse, load, event, answer p50 "
                f"{r['provider_load_p50_ms']:.3f} / p99 {r['provider_load_p99_ms']:.3f} ms"
            )
        else:
            print(
                f"    first stream p50 {r['first_p50_ms']:.3f} ms; client {r['client']}, "
                f"{r['client_processes']} processes x {r['channels_per_process']} connections"
            )
        print(f"    edge CPU per flip {r['edge_cpu_ms_per_flip']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
