"""Soak: a secured, Redis-fed edge under steady load for a long time, with a kill switch
flipped every second, checked for failed calls, missed changes and memory growth.

    python -m benchmarks.soak --duration 600             # the recorded run (BENCHMARKS.md)
    python -m benchmarks.soak --duration 20 --streams 10 # a smoke run
    python -m benchmarks.soak --plaintext --rate 2000    # no TLS, no tokens; a fixed rate

What it starts (loopback only, every process bounded and stopped at the end): a redis-server
on a free port in a temporary directory; one ``flagedge serve --redis`` edge with TLS and an
auth file (benchmarks/secured.py: a throwaway CA and one token), unless --plaintext; the load
generator (flagedge.bench.load, its own process) calling v2 ResolveBoolean with the token.

    1. open        --streams Watch streams (the same token), and a writer that flips the
                   kill switch of one flag through Redis every --flip-interval seconds, with
                   the same write path as ``flagedge kill``/``restore`` (store/writes.py)
    2. calibrate   the maximum rate of ResolveBoolean on this edge while it serves them:
                   closed loop (--calibrate seconds), then the highest open-loop rate it
                   keeps up with (``calibrate``); unless --rate gives the rate
    3. soak        open loop at --load-fraction (0.8) of that maximum for --duration s
    4. judge       failed calls: the load's errors plus any stream that ended; missed
                   changes: (stream, write) pairs where the stream got no event naming the
                   flag at that write's version (before the next write's); the edge's resident
                   memory (VmRSS, sampled every second): the median of the last 10 samples
                   over the median of the first 10 after --warmup seconds

Exit 0 when there are no failed calls, no missed changes and growth under --max-growth (5%);
1 otherwise. The report also gives what each process took of the machine's CPU: on two cores
the load generator, the streams' client and Redis share them with the edge.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.scratch import free_port, redis_command, wait_for_redis, with_switch
from flagedge.bench.load import Load, Secure, Workload, bench_doc, run_scenario

ENV = "soak"
FLAG = "soak-switch"
SERVING = re.compile(r"serving gRPC on [^ ]+:(\d+), management on [^ ]+:(\d+)")
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def _rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _document() -> dict[str, Any]:
    return with_switch(bench_doc(), FLAG)


class _Process:
    """A child whose stderr is drained by a thread (and kept, last lines only)."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            list(args), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
        )
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._seen:
                self.lines = [*self.lines[-200:], line]
                self._seen.notify_all()

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 60.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                for line in self.lines:
                    found = pattern.search(line)
                    if found:
                        return found
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the edge did not start:\n" + "".join(self.lines[-20:]))
                self._seen.wait(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._drainer.join(10)
        if self.process.stderr is not None:
            self.process.stderr.close()


@dataclass
class Streams:
    """Watch streams and what each heard: the versions of events that named FLAG."""

    count: int
    heard: list[list[int]] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    opened: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    cpu_seconds: float = 0.0

    def run(self, target: str, secure: Secure) -> None:
        asyncio.run(self._main(target, secure))

    async def _main(self, target: str, secure: Secure) -> None:
        import grpc

        from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb

        cpu0 = time.process_time()
        self.heard = [[] for _ in range(self.count)]
        channels = [
            grpc.aio.secure_channel(target, secure.credentials())
            if secure.tls
            else grpc.aio.insecure_channel(target)
            for _ in range(4)
        ]
        started = 0

        async def watch(i: int) -> None:
            nonlocal started
            call = channels[i % len(channels)].unary_stream(
                "/flagedge.v1.Evaluation/Watch",
                request_serializer=pb.WatchRequest.SerializeToString,
                response_deserializer=pb.WatchEvent.FromString,
            )(pb.WatchRequest(keys=[FLAG]), metadata=secure.metadata)
            try:
                first = await call.read()
                assert first.initial
                started += 1
                if started == self.count:
                    self.opened.set()
                while True:
                    event = await call.read()
                    if event is grpc.aio.EOF:  # type: ignore[attr-defined]
                        self.ended.append(f"stream {i} ended by the server")
                        return
                    if FLAG in event.changed_keys:
                        self.heard[i].append(event.snapshot_version)
            except asyncio.CancelledError:
                call.cancel()
                raise
            except grpc.aio.AioRpcError as exc:
                self.ended.append(f"stream {i}: {exc.code().name} {exc.details()}")

        tasks = [asyncio.create_task(watch(i)) for i in range(self.count)]
        while not self.stop.is_set():
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()
        self.cpu_seconds = time.process_time() - cpu0


def missed_changes(writes: Sequence[int], heard: Sequence[Sequence[int]]) -> int:
    """(stream, write) pairs where the stream heard no event for the write's version, or a
    later one before the next write's (a reload covering two writes still counts the first
    as missed: its state was never announced)."""
    missed = 0
    bounds = [*writes[1:], float("inf")]
    for versions in heard:
        seen = sorted(versions)
        for version, upper in zip(writes, bounds, strict=True):
            if not any(version <= v < upper for v in seen):
                missed += 1
    return missed


def growth(samples: Sequence[tuple[float, int]], warmup: float) -> dict[str, Any]:
    """Resident memory after warm-up: first and last medians of 10 samples, and the ratio."""
    after = [kib for t, kib in samples if t >= warmup]
    if len(after) < 20:
        after = [kib for _, kib in samples[len(samples) // 2 :]]
    if len(after) < 2:
        return {"start_kib": None, "end_kib": None, "growth": None}
    k = max(1, min(10, len(after) // 4))
    start, end = statistics.median(after[:k]), statistics.median(after[-k:])
    return {
        "start_kib": start,
        "end_kib": end,
        "max_kib": max(after),
        "growth": round(end / start - 1, 4),
    }


def calibrate(
    target: str, workload: Workload, secure: Secure, pid: int, seconds: float
) -> dict[str, Any]:
    """The maximum unary rate, two ways: closed loop (64 calls in flight, answers as fast as
    they come: what ``bench load`` reports), then the highest open-loop rate, stepping down
    from it by a tenth, that the edge keeps up with (all calls answered, 98% of the rate
    achieved, p99 under 250 ms). An open loop sends calls as they fall due, in small
    batches, which costs the edge and the generator more per call than a closed loop's
    full pipes; the soak's rate is a fraction of the open-loop figure."""
    closed = run_scenario(
        target,
        "resolve",
        Load(duration=seconds, channels=4, concurrency=16),
        workload,
        server_pids=(pid,),
        secure=secure,
    )
    steps = []
    rate = float(closed["rpc_per_s"])
    while rate > 50:
        row = run_scenario(
            target,
            "resolve",
            Load(duration=max(3.0, seconds / 2), channels=4, concurrency=16, rate=rate),
            workload,
            server_pids=(pid,),
            evals_per_call=1,
            secure=secure,
        )
        steps.append(
            {"rate": round(rate), **{k: row[k] for k in ("rpc_per_s", "errors", "p99_ms")}}
        )
        if not row["errors"] and row["rpc_per_s"] >= 0.98 * rate and row["p99_ms"] < 250:
            break
        rate *= 0.9
    return {
        "closed_loop_rpc_per_s": closed["rpc_per_s"],
        "closed_loop_server_us": closed["server_us"],
        "open_loop_steps": steps,
        "max_rpc_per_s": round(rate),
    }


def soak(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import secured
    from flagedge.store import writes
    from flagedge.store.redis import RedisAdmin, parse_target

    if shutil.which("redis-server") is None:
        raise RuntimeError("the soak needs redis-server")
    scratch = Path(tempfile.mkdtemp(prefix="flagedge-soak-"))
    children: list[_Process] = []
    admin = None
    try:
        port = free_port()
        redis = _Process(redis_command(port, scratch))
        children.append(redis)
        url = f"redis://127.0.0.1:{port}"
        admin = RedisAdmin(parse_target(url), ENV)
        wait_for_redis(admin, timeout=15)
        writes.push(admin, _document(), "soak")

        secure, extra = Secure(), []
        if not args.plaintext:
            material = secured.make(scratch / "tls")
            secure, extra = material.secure(), material.serve_args()
            extra.append(f"--max-streams-per-token={max(100, args.streams)}")
        edge = _Process(
            [sys.executable, "-m", "flagedge", "serve", "--host=127.0.0.1", "--port=0",
             "--management-port=0", "--sync-port=off", "--ofrep-port=off", "--workers=1",
             f"--redis={url}",
             f"--env={ENV}", f"--lkg-file={scratch / 'lkg.json'}", *extra]
        )  # fmt: skip
        children.append(edge)
        found = edge.wait_for(SERVING)
        target = f"127.0.0.1:{found.group(1)}"
        pid = edge.process.pid
        workload = Workload(boolean_flag=next(k for k in _document()["flags"] if k != FLAG))

        streams = Streams(args.streams)
        streamer = threading.Thread(target=streams.run, args=(target, secure), daemon=True)
        streamer.start()
        if not streams.opened.wait(60):
            raise RuntimeError(f"the streams did not open: {streams.ended[:3]}")

        written: list[int] = []
        samples: list[tuple[float, int]] = []
        done = threading.Event()
        start = 0.0

        def flip() -> None:
            killed = False
            while not done.wait(args.flip_interval):
                outcome = (
                    writes.restore(admin, FLAG, "soak")
                    if killed
                    else writes.kill(admin, FLAG, "off", "soak")
                )
                if outcome is not None:
                    written.append(outcome.result.version)
                killed = not killed

        loads: list[float] = []

        def sample() -> None:
            while not done.wait(1.0):
                kib = _rss_kib(pid)
                if kib is not None:
                    samples.append((time.monotonic() - start, kib))
                loads.append(os.getloadavg()[0])

        # The streams and the writer run during the calibration too: the maximum is what
        # this edge answers while it also serves them.
        flipper = threading.Thread(target=flip, daemon=True)
        flipper.start()
        rate = args.rate
        calibration: dict[str, Any] | None = None
        if rate is None:
            calibration = calibrate(target, workload, secure, pid, args.calibrate)
            rate = calibration["max_rpc_per_s"] * args.load_fraction

        start = time.monotonic()
        load_start = os.getloadavg()  # the machine's other work: it shares the two cores
        sampler = threading.Thread(target=sample, daemon=True)
        helpers = [flipper, sampler]
        cpu_before = {"edge": _cpu_seconds(pid), "redis": _cpu_seconds(redis.process.pid)}
        sampler.start()
        load = run_scenario(
            target,
            "resolve",
            Load(duration=args.duration, channels=4, concurrency=16, rate=rate),
            workload,
            server_pids=(pid,),
            evals_per_call=1,
            secure=secure,
        )
        done.set()
        for helper in helpers:
            helper.join(30)
        cpu_after = {"edge": _cpu_seconds(pid), "redis": _cpu_seconds(redis.process.pid)}
        seconds = time.monotonic() - start
        time.sleep(2.0)  # the last write's events are on their way
        streams.stop.set()
        streamer.join(30)
        missed = missed_changes(written, streams.heard)
        memory = growth(samples, args.warmup)
        cpu = {
            name: round((cpu_after[name] or 0) - (cpu_before[name] or 0), 1) for name in cpu_before
        }
        cpu["load generator"] = round((load["client_us"] or 0) * load["calls"] / 1e6, 1)
        cpu["streams and writer"] = round(streams.cpu_seconds, 1)
        failed = load["errors"] + len(streams.ended)
        ok = (
            failed == 0
            and missed == 0
            and memory["growth"] is not None
            and memory["growth"] < args.max_growth
        )
        return {
            "ok": ok,
            "secured": not args.plaintext,
            "duration_s": args.duration,
            "calibration": calibration,
            "loadavg": {
                "start": round(load_start[0], 2),
                "median": round(statistics.median(loads), 2) if loads else None,
                "max": round(max(loads), 2) if loads else None,
            },
            "rate": round(rate),
            "load": {
                k: load[k]
                for k in (
                    "rpc_per_s",
                    "calls",
                    "errors",
                    "first_error",
                    "p50_ms",
                    "p99_ms",
                    "p999_ms",
                    "server_us",
                )
            },
            "streams": args.streams,
            "streams_ended": streams.ended[:10],
            "writes": len(written),
            "events_heard": sum(len(h) for h in streams.heard),
            "missed_changes": missed,
            "failed_calls": failed,
            "memory": memory,
            "rss_samples": len(samples),
            "cpu_seconds": cpu,
            "wall_seconds": round(seconds, 1),
            "cores": os.cpu_count(),
        }
    finally:
        if admin is not None:
            admin.close()
        for child in reversed(children):
            child.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of soak")
    parser.add_argument("--streams", type=int, default=100, help="open Watch streams")
    parser.add_argument("--flip-interval", type=float, default=1.0, help="seconds per write")
    parser.add_argument("--rate", type=float, help="calls/s (default: a fraction of the max)")
    parser.add_argument("--load-fraction", type=float, default=0.8, help="of the max rate")
    parser.add_argument("--calibrate", type=float, default=10.0, help="seconds to find the max")
    parser.add_argument("--warmup", type=float, help="seconds before memory is compared")
    parser.add_argument("--max-growth", type=float, default=0.05, help="resident memory growth")
    parser.add_argument("--plaintext", action="store_true", help="no TLS and no tokens")
    parser.add_argument("--json", action="store_true", help="the report as one JSON object")
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(60.0, args.duration / 5)
    report = soak(args)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:16} {json.dumps(value) if isinstance(value, dict | list) else value}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
