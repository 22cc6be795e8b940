"""Load generator for a flagedge server: RPC/s, evaluations/s and latency percentiles.

    python -m benchmarks.load                      # starts its own server, every scenario
    python -m benchmarks.load --scenario batch --duration 10 --server-workers 2
    python -m benchmarks.load --target 127.0.0.1:8013 --scenario evaluate --rate 4000

Scenarios (all against the 200 mixed flags of benchmarks/workloads.py):

    evaluate    unary flagedge.v1 Evaluate, one targeted flag, one context
    resolve     unary flagd.evaluation.v2 ResolveBoolean (what OpenFeature providers call)
    all         EvaluateAll: 200 flags for one context
    batch       EvaluateBatch: 100 contexts x 10 flags (1,000 evaluations a call)
    stream      EvaluateStream: the same 100 x 10 batches over long-lived bidi streams

Several load processes (--procs), each with several channels (--channels, each its own
connection) and several calls in flight per channel (--concurrency). Requests are serialised
once up front and responses are not decoded, so the generator spends its CPU on gRPC alone:
server and generator share the machine. --rate switches to an open loop at that many calls/s
(spread over the processes), for latency at a given load rather than at saturation.
Everything is loopback and bounded by --duration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.workloads import mixed_context, mixed_doc, mixed_specs, rollout_contexts

SCENARIOS = ("evaluate", "resolve", "all", "batch", "stream")


def _requests(scenario: str) -> tuple[str, bytes, int]:
    """(method path, serialised request, evaluations per call)."""
    from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as v2
    from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb

    specs = mixed_specs(200)
    targeted = next(s.key for s in specs if s.kind == "targeted")
    boolean = next(s.key for s in specs if s.kind == "rollout")
    if scenario == "evaluate":
        evaluate = pb.EvaluateRequest(flag_key=targeted)
        evaluate.context.update(mixed_context())
        return "/flagedge.v1.Evaluation/Evaluate", evaluate.SerializeToString(), 1
    if scenario == "resolve":
        resolve = v2.ResolveBooleanRequest(flag_key=boolean)
        resolve.context.update(mixed_context())
        return "/flagd.evaluation.v2.Service/ResolveBoolean", resolve.SerializeToString(), 1
    if scenario == "all":
        every = pb.EvaluateAllRequest()
        every.context.update(mixed_context())
        return "/flagedge.v1.Evaluation/EvaluateAll", every.SerializeToString(), 200
    batch = pb.EvaluateBatchRequest(flag_keys=[s.key for s in specs[:10]])
    for context in rollout_contexts(100):
        batch.contexts.add().update({**mixed_context(), **context})
    path = "/flagedge.v1.Evaluation/" + (
        "EvaluateStream" if scenario == "stream" else "EvaluateBatch"
    )
    return path, batch.SerializeToString(), 1000


@dataclass
class WorkerResult:
    calls: int
    errors: int
    latencies_us: list[int]
    seconds: float


def _identity(b: bytes) -> bytes:
    return b


async def _drive(
    target: str,
    scenario: str,
    duration: float,
    channels: int,
    concurrency: int,
    rate: float | None,
) -> WorkerResult:
    import grpc

    path, payload, _ = _requests(scenario)
    pool = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(channels)
    ]
    for channel in pool:
        await asyncio.wait_for(channel.channel_ready(), 10)
    latencies: list[int] = []
    errors = 0
    start = time.perf_counter()
    end = start + duration
    lanes = channels * concurrency
    interval = (lanes / rate) if rate else 0.0

    async def unary_lane(call: Callable[..., Any], offset: float) -> None:
        nonlocal errors
        next_at = start + offset
        while True:
            if interval:
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_at += interval
            t0 = time.perf_counter_ns()
            if t0 / 1e9 > end + (time.perf_counter() - t0 / 1e9):
                return
            if time.perf_counter() >= end:
                return
            try:
                await call(payload, timeout=10)
            except grpc.RpcError:
                errors += 1
                continue
            latencies.append((time.perf_counter_ns() - t0) // 1000)

    async def stream_lane(channel: Any) -> None:
        nonlocal errors
        call = channel.stream_stream(
            path, request_serializer=_identity, response_deserializer=_identity
        )()
        while time.perf_counter() < end:
            t0 = time.perf_counter_ns()
            await call.write(payload)
            await call.read()
            latencies.append((time.perf_counter_ns() - t0) // 1000)
        await call.done_writing()
        call.cancel()

    tasks = []
    for i, channel in enumerate(pool):
        for j in range(concurrency):
            if scenario == "stream":
                tasks.append(stream_lane(channel))
            else:
                call = channel.unary_unary(
                    path, request_serializer=_identity, response_deserializer=_identity
                )
                tasks.append(unary_lane(call, interval * (i * concurrency + j) / lanes))
    await asyncio.gather(*tasks)
    seconds = time.perf_counter() - start
    for channel in pool:
        await channel.close(None)
    return WorkerResult(len(latencies), errors, latencies, seconds)


def _worker(args: tuple[str, str, float, int, int, float | None], out: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    result = asyncio.run(_drive(*args))
    out.put(asdict(result))


def _percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[index] / 1000.0


def run_scenario(
    target: str,
    scenario: str,
    *,
    duration: float,
    procs: int,
    channels: int,
    concurrency: int,
    rate: float | None,
) -> dict[str, Any]:
    _, _, evals = _requests(scenario)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    per_proc_rate = rate / procs if rate else None
    workers = [
        ctx.Process(
            target=_worker,
            args=((target, scenario, duration, channels, concurrency, per_proc_rate), out),
        )
        for _ in range(procs)
    ]
    for w in workers:
        w.start()
    results = [WorkerResult(**out.get(timeout=duration + 60)) for _ in workers]
    for w in workers:
        w.join()
    latencies = sorted(x for r in results for x in r.latencies_us)
    calls = sum(r.calls for r in results)
    seconds = max(r.seconds for r in results)
    return {
        "scenario": scenario,
        "rpc_per_s": round(calls / seconds),
        "evals_per_s": round(calls * evals / seconds),
        "p50_ms": round(_percentile(latencies, 0.50), 3),
        "p99_ms": round(_percentile(latencies, 0.99), 3),
        "p999_ms": round(_percentile(latencies, 0.999), 3),
        "calls": calls,
        "errors": sum(r.errors for r in results),
        "procs": procs,
        "channels": channels,
        "concurrency": concurrency,
        "rate": rate,
        "seconds": round(seconds, 2),
    }


class _Server:
    """A ``flagedge serve`` child on a free loopback port, serving the 200 mixed flags."""

    def __init__(self, workers: int) -> None:
        self._dir = tempfile.TemporaryDirectory()
        path = os.path.join(self._dir.name, "flags.json")
        with open(path, "w") as f:
            json.dump(mixed_doc(200), f)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flagedge.server",
                f"--flags={path}",
                "--host=127.0.0.1",
                "--port=0",
                "--management-port=0",
                f"--workers={workers}",
                "--log-level=INFO",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        self.port = 0
        ready = 0
        for line in self.process.stderr:
            found = re.search(r"serving gRPC on [^ ]+:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                ready += 1
                if ready == workers:
                    break
        if not self.port:
            raise RuntimeError("the server did not start")
        # Keep draining its log so that the server never blocks on a full pipe.
        threading.Thread(target=self.process.stderr.read, daemon=True).start()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self._dir.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", help="host:port of a running server (default: start one)")
    parser.add_argument("--server-workers", type=int, default=1)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "every"], default="every")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per scenario")
    parser.add_argument("--procs", type=int, default=2, help="load processes")
    parser.add_argument("--channels", type=int, default=4, help="channels per process")
    parser.add_argument("--concurrency", type=int, default=8, help="in-flight calls per channel")
    parser.add_argument("--rate", type=float, help="open loop: total calls per second")
    parser.add_argument("--json", action="store_true", help="one JSON object per scenario")
    args = parser.parse_args(argv)

    server = None if args.target else _Server(args.server_workers)
    target = args.target or f"127.0.0.1:{server.port}"  # type: ignore[union-attr]
    scenarios = SCENARIOS if args.scenario == "every" else (args.scenario,)
    try:
        for scenario in scenarios:
            row = run_scenario(
                target,
                scenario,
                duration=args.duration,
                procs=args.procs,
                channels=args.channels,
                concurrency=args.concurrency,
                rate=args.rate,
            )
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(
                    f"{scenario:9} {row['rpc_per_s']:>9,} rpc/s {row['evals_per_s']:>11,} evals/s"
                    f"  p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms"
                    f"  p999 {row['p999_ms']:.2f} ms  errors {row['errors']}",
                    flush=True,
                )
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
