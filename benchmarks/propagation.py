"""Propagation latency of the Redis control plane: from a write until each edge answers it.

    python -m benchmarks.propagation                   # 3 edges, 200 flips idle + 200 loaded
    python -m benchmarks.propagation --edges 5 --flips 500 --load-rate 4000
    python -m benchmarks.propagation --client grpcio --poll-interval 0   # the old instruments

What it starts (loopback only, every process bounded and stopped at the end): one
redis-server on a free port in a temporary directory, N ``flagedge serve --redis`` edges, one
poller process, and (for the loaded run) one load process.

A flip is one control-plane write: a kill switch forcing ``switch`` to ``off`` (value False),
then its removal (value True), alternately; the write is the same one Lua script the CLI
runs (RedisAdmin.write; the CLI's validation happens before it and is not timed). The clock
starts just before the write and stops when the poller, which calls Evaluate on every edge
over gRPC, first sees the new value there. Times come from CLOCK_MONOTONIC, which every
process on the machine shares. The poller polls only while a flip is armed (from 2 ms before
the write until every edge has answered it) and sleeps otherwise, so that in the idle run the
edges serve nothing else; the next flip follows after a small random gap.

The loaded run adds a load process calling Evaluate (a rule-targeted flag with a user
context) on every edge at --load-rate calls/s in total, open loop, so that the edges are
serving while the changes arrive.

The instruments share the machine with the edges, so they are kept lean. By default both
use benchmarks/h2probe.py, a minimal gRPC client on raw HTTP/2 frames (about 50 µs of CPU per
call, where grpcio's client takes about 180 µs), and each edge is polled once every 0.5 ms
(the loops staggered) rather than back to back: on two cores, three edges answering polls
back to back would need more CPU than there is, since grpcio's server spends about 300 µs of
CPU on each isolated call. A measurement therefore includes the wait for the next poll (up
to 0.5 ms) and that poll's round trip; ``poll_window`` reports the round trip of the poll
that first showed each change. ``--client grpcio --poll-interval 0`` gives the earlier
method (grpc.aio client, back-to-back polls) for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
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
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

from benchmarks.scratch import free_port, push, redis_command, wait_for_redis, with_switch
from flagedge.bench.load import QUANTILES

FLAG = "switch"
POLL_INTERVAL = 0.0005  # seconds between the starts of one edge's polls; 0: back to back
SERVING = re.compile(r"serving gRPC on [^ ]+:(\d+), management")


def _document() -> dict[str, Any]:
    from flagedge.bench.workloads import mixed_doc

    return with_switch(mixed_doc(200), FLAG)


# -- child processes -----------------------------------------------------------------------


def _poller(
    ports: Sequence[int],
    seen: Any,
    stamps: Any,
    sent: Any,
    flips: int,
    armed: Any,
    stop: Any,
    interval: float,
    client: str = "probe",
) -> None:
    """One poll loop per edge: while a flip is armed, Evaluate ``switch`` on that edge, one
    call in flight at a time, a new call starting every ``interval`` seconds (or as soon as
    the previous one answers, when that takes longer); the loops are staggered across the
    interval. The first answer that shows a flip stamps its arrival (``stamps``) and the
    moment its call was sent (``sent``): the edge answered somewhere between the two.

    ``client`` picks the gRPC client: "probe" (benchmarks/h2probe.py, one thread per edge;
    the default, because it leaves the edges most of the CPU) or "grpcio" (grpc.aio)."""
    from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb

    request = pb.EvaluateRequest(flag_key=FLAG).SerializeToString()
    clock = time.monotonic_ns
    period = int(interval * 1e9)
    method = "/flagedge.v1.Evaluation/Evaluate"

    def value_of(answer: bytes) -> bool:
        return bool(pb.EvaluateResponse.FromString(answer).result.value.bool_value)

    def loop(i: int, call: Any, wait: Any) -> Any:
        """The poll loop of edge ``i`` as a generator: it yields what to await or call."""
        last = value_of((yield call))
        seen[i] = 0  # ready: the value before the first flip is known
        offset = period * i // max(1, len(ports))
        while not stop.value:
            k = seen[i]
            if armed.value != k or k >= flips:
                yield wait(0.0005)
                continue
            start = clock()
            # Stagger: each edge's calls start at its own phase of the period.
            phase = (start - offset) % period if period else 0
            if phase:
                yield wait((period - phase) / 1e9)
                start = clock()
            value = value_of((yield call))
            if value != last:
                stamps[i * flips + k] = clock()
                sent[i * flips + k] = start
                seen[i] = k + 1
                last = value

    if client == "probe":
        import threading

        from benchmarks.h2probe import UnaryProbe

        def run(i: int, port: int) -> None:
            probe = UnaryProbe("127.0.0.1", port, method, request)
            call = probe.call  # one bound method, so that ``is`` recognises it
            steps = loop(i, call, time.sleep)
            step = next(steps)
            try:
                while True:
                    step = steps.send(step() if step is call else step)
            except StopIteration:
                probe.close()

        threads = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate(ports)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return

    import grpc

    async def poll(i: int, port: int) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(method, request_serializer=None)
            steps = loop(i, call, asyncio.sleep)
            step = next(steps)
            try:
                while True:
                    if step is call:
                        step = steps.send(await call(request, timeout=5))
                    else:
                        await step
                        step = steps.send(None)
            except StopIteration:
                pass

    async def main() -> None:
        await asyncio.gather(*(poll(i, p) for i, p in enumerate(ports)))

    asyncio.run(main())


def _load(ports: Sequence[int], rate: float, stop: Any, done: Any, client: str = "probe") -> None:
    """Open-loop Evaluate calls at ``rate`` per second over all edges, each a rule-targeted
    flag with a user context. ``client``: "probe" (benchmarks/h2probe.py, calls pipelined on
    one HTTP/2 connection per edge, answers read and checked but not decoded) or "grpcio"."""
    from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb
    from flagedge.bench.workloads import mixed_context, mixed_specs

    key = next(s.key for s in mixed_specs(200) if s.kind == "targeted")
    request = pb.EvaluateRequest(flag_key=key)
    request.context.update(mixed_context())
    payload = request.SerializeToString()
    if client == "probe":
        _load_probe(ports, rate, stop, done, payload)
        return

    import grpc

    async def main() -> None:
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p}") for p in ports]
        calls = [
            c.unary_unary("/flagedge.v1.Evaluation/Evaluate", request_serializer=None)
            for c in channels
        ]
        pending: set[asyncio.Task[Any]] = set()
        interval = 1.0 / rate
        start = time.monotonic()
        n = 0
        while not stop.value:
            n += 1
            target = start + n * interval
            delay = target - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(calls[n % len(calls)](payload, timeout=5))
            pending.add(task)
            task.add_done_callback(pending.discard)
            done.value += 1
        await asyncio.gather(*pending, return_exceptions=True)
        for c in channels:
            await c.close()

    asyncio.run(main())


def _load_probe(ports: Sequence[int], rate: float, stop: Any, done: Any, payload: bytes) -> None:
    import selectors

    from benchmarks.h2probe import H2Connection, ProbeError

    conns = [
        H2Connection("127.0.0.1", p, "/flagedge.v1.Evaluation/Evaluate", payload) for p in ports
    ]
    selector = selectors.DefaultSelector()
    for conn in conns:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    interval = 1.0 / rate
    start = time.monotonic()
    n = 0
    while not stop.value:
        due = start + (n + 1) * interval
        while True:
            now = time.monotonic()
            for key, _ in selector.select(max(0.0, due - now)):
                for _, message in key.data.receive(block=False):
                    if message is None:
                        raise ProbeError("a load call failed")
            if time.monotonic() >= due:
                break
        n += 1
        conns[n % len(conns)].send()
        done.value += 1
    for conn in conns:
        conn.close()


# -- the run -------------------------------------------------------------------------------


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _measure(
    admin: Any, ports: list[int], flips: int, load_rate: float, interval: float, client: str
) -> dict[str, Any]:
    from flagedge.model import Override, OverrideKind
    from flagedge.store.plane import ChangeKind, Write

    ctx = multiprocessing.get_context("spawn")
    n = len(ports)
    seen = ctx.Array("i", [-1] * n, lock=False)
    stamps = ctx.Array("q", n * flips, lock=False)
    sent = ctx.Array("q", n * flips, lock=False)
    armed: Synchronized[int] = ctx.Value("i", -1, lock=False)  # type: ignore[assignment]
    stop: Synchronized[int] = ctx.Value("i", 0, lock=False)  # type: ignore[assignment]
    done: Synchronized[int] = ctx.Value("q", 0, lock=False)  # type: ignore[assignment]
    poller = ctx.Process(
        target=_poller,
        args=(ports, seen, stamps, sent, flips, armed, stop, interval, client),
        daemon=True,
    )
    poller.start()
    loader = None
    if load_rate > 0:
        loader = ctx.Process(target=_load, args=(ports, load_rate, stop, done, client), daemon=True)
        loader.start()
    deadline = time.monotonic() + 30
    while any(seen[e] < 0 for e in range(n)):
        if time.monotonic() > deadline:
            raise RuntimeError("the poller did not start")
        time.sleep(0.01)
    time.sleep(1.0)  # the load (if any) settles
    started: list[int] = []
    killed = Override(OverrideKind.KILL, "off")
    load_start, load_t0 = done.value, time.monotonic()
    try:
        for i in range(flips):
            ov = killed if i % 2 == 0 else None
            raw = admin.read()
            write = Write(raw.version, ChangeKind.OVERRIDE, "bench", "flip", flag=FLAG, override=ov)
            armed.value = i
            time.sleep(0.002)  # the poller is polling before the write
            t0 = time.monotonic_ns()
            result = admin.write(write)
            assert result.ok
            started.append(t0)
            deadline = time.monotonic() + 10
            while any(seen[e] <= i for e in range(n)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"flip {i} did not reach every edge in 10 s")
                time.sleep(0.001)  # (the stamps come from the poller)
            armed.value = -1
            time.sleep(random.uniform(0.002, 0.01))
    finally:
        achieved = (done.value - load_start) / max(1e-9, time.monotonic() - load_t0)
        stop.value = 1
        poller.join(10)
        if loader is not None:
            loader.join(10)
        for p in (poller, loader):
            if p is not None and p.is_alive():
                p.kill()
    per_edge = [
        sorted((stamps[e * flips + i] - started[i]) / 1e6 for i in range(flips)) for e in range(n)
    ]
    every = sorted(x for lat in per_edge for x in lat)
    # The poll that first showed the flip was sent this long before its answer arrived: the
    # edge answered somewhere inside that window, so it bounds the measurement's error.
    window = sorted(
        (stamps[e * flips + i] - sent[e * flips + i]) / 1e6 for e in range(n) for i in range(flips)
    )
    last_edge = sorted(max(per_edge[e][i] for e in range(n)) for i in range(flips))
    return {
        "edges": n,
        "flips": flips,
        "load_rate_target": load_rate,
        "load_rate_achieved": round(achieved) if load_rate > 0 else 0,
        "p50_ms": round(statistics.median(every), 3),
        "p99_ms": round(_percentile(every, 0.99), 3),
        "max_ms": round(every[-1], 3),
        "all_edges_p50_ms": round(statistics.median(last_edge), 3),
        "all_edges_p99_ms": round(_percentile(last_edge, 0.99), 3),
        "poll_interval_ms": interval * 1e3,
        "poll_client": client,
        "poll_window_p50_ms": round(statistics.median(window), 3),
        "poll_window_p99_ms": round(_percentile(window, 0.99), 3),
        # every edge's latency at flagedge.bench.load.QUANTILES, for the report's plots
        "cdf": [round(_percentile(every, q), 3) for q in QUANTILES],
    }


def run(
    edges: int,
    flips: int,
    load_rate: float,
    poll_interval: float = POLL_INTERVAL,
    client: str = "probe",
) -> list[dict[str, Any]]:
    from flagedge.store.redis import RedisAdmin, parse_target

    tmp = Path(tempfile.mkdtemp(prefix="flagedge-propagation-"))
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(subprocess.Popen(redis_command(port, tmp), stdout=subprocess.DEVNULL))
        url = f"redis://127.0.0.1:{port}"
        admin = RedisAdmin(parse_target(url), "bench")
        wait_for_redis(admin)
        push(admin, _document())
        ports = []
        for i in range(edges):
            edge = subprocess.Popen(
                [
                    *(sys.executable, "-m", "flagedge", "serve", "--host=127.0.0.1"),
                    *("--port=0", "--management-port=0", "--sync-port=off", "--ofrep-port=0"),
                    "--workers=1",
                    f"--redis={url}",
                    *("--env=bench", f"--lkg-file={tmp / f'lkg-{i}.json'}"),
                ],
                stderr=subprocess.PIPE,
                text=True,
            )
            processes.append(edge)
            assert edge.stderr is not None
            for line in edge.stderr:
                found = SERVING.search(line)
                if found:
                    ports.append(int(found.group(1)))
                    break
            else:
                raise RuntimeError("an edge did not start")
            # Keep draining its log so that it never blocks on a full pipe.
            threading_drain(edge)
        results = [_measure(admin, ports, flips, 0, poll_interval, client)]
        if load_rate > 0:
            results.append(_measure(admin, ports, flips, load_rate, poll_interval, client))
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


def threading_drain(process: subprocess.Popen[str]) -> None:
    import threading

    def drain() -> None:
        assert process.stderr is not None
        for _ in process.stderr:
            pass

    threading.Thread(target=drain, daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edges", type=int, default=3)
    parser.add_argument("--flips", type=int, default=200)
    parser.add_argument("--load-rate", type=float, default=3000.0, help="0: idle run only")
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=POLL_INTERVAL * 1e3,
        help="ms between the starts of one edge's polls (default 0.5); 0: back to back",
    )
    parser.add_argument(
        "--client",
        choices=("probe", "grpcio"),
        default="probe",
        help="the poller's gRPC client: the lean probe (benchmarks/h2probe.py) or grpc.aio",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = run(args.edges, args.flips, args.load_rate, args.poll_interval / 1e3, args.client)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"propagation, {args.edges} edges, {args.flips} flips each run, {os.cpu_count()} CPUs")
    print("  run       load (calls/s)   p50 ms   p99 ms   max ms   all-edges p50/p99 ms")
    for r in results:
        name = "idle" if r["load_rate_target"] == 0 else "loaded"
        load = f"{r['load_rate_achieved']}" if r["load_rate_target"] else "-"
        print(
            f"  {name:<9} {load:>14} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['max_ms']:>8.3f}"
            f"   {r['all_edges_p50_ms']:.3f} / {r['all_edges_p99_ms']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
