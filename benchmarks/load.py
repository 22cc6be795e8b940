"""Load generator for flagedge (or any flagd-compatible server): calls/s, evaluations/s, latency.

    python -m benchmarks.load                          # starts flagedge, every scenario
    python -m benchmarks.load --compare --repeat 3     # flagedge and a bare grpc.aio echo
                                                       # server, interleaved, medians of 3
    python -m benchmarks.load --target 127.0.0.1:8013 --scenario resolve --rate 4000
    python -m benchmarks.load --scenario batch --duration 10 --server-workers 2 --json

Scenarios (all against the 200 mixed flags of benchmarks/workloads.py):

    evaluate    unary flagedge.v1 Evaluate, one targeted flag, one context
    resolve     unary flagd.evaluation.v2 ResolveBoolean (what OpenFeature providers call)
    all         EvaluateAll: 200 flags for one context
    batch       EvaluateBatch: 100 contexts x 10 flags (1,000 evaluations a call)
    stream      EvaluateStream: the same 100 x 10 batches over long-lived bidi streams

Against a flagd server only ``resolve`` applies (the others are flagedge.v1 methods).

How it loads. Load processes (--procs), each with its own channels (--channels, each its own
HTTP/2 connection, so ``serve --workers`` spreads them) and calls in flight per channel
(--concurrency). Requests are serialised once up front and responses are never decoded, so
the generator spends its CPU on gRPC alone: server and generator share the machine, and every
microsecond the generator saves is one the server can use. That is also why the defaults are
one process with 4 channels x 16 calls on uvloop when it is installed (--client-loop): on two
cores that costs the generator the least CPU per call. All processes connect first (and open
their streams), then start together on a signal and stop after --duration seconds.

--rate R is an open loop: R calls/s in total, each scheduled at a fixed time whatever the
state of the others, with latency measured from the scheduled time (so a stalled server
shows up as latency instead of as fewer calls: no coordinated omission). The loop wakes at
most once a millisecond, so latencies include up to 1 ms of sending late. Without --rate, each
lane sends its next call as soon as the previous one returns (throughput at saturation).

The server it starts (or the one named with --server-pid) is also charged for its CPU time:
``server_us`` is server CPU per call and ``client_us`` the generator's, which on a shared,
noisy machine are steadier than calls/s. --compare puts the same figures for a bare grpc.aio
echo server (benchmarks/echo_server.py) next to flagedge's, measured in the same run;
--server-loop uvloop runs both on uvloop. Everything is loopback and bounded by --duration.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import multiprocessing
import os
import queue
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.workloads import mixed_context, mixed_doc, mixed_specs, rollout_contexts

SCENARIOS = ("evaluate", "resolve", "all", "batch", "stream")
_TICK = os.sysconf("SC_CLK_TCK")
# The open loop wakes at most every _TICK_S and sends every call that is due by then: one
# wake-up per call would cost the generator more CPU than the calls themselves. A call sent
# late by up to this much is charged the delay (latency runs from its scheduled time).
_TICK_S = 0.001


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


# -- one load process ---------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    target: str
    scenario: str
    duration: float
    channels: int
    concurrency: int
    rate: float | None  # calls/s for this process; None: closed loop
    client: str  # "aio" or "sync"
    loop: str = "asyncio"  # or "uvloop"


@dataclass
class WorkerResult:
    calls: int
    errors: int
    latencies_us: list[int]
    seconds: float
    cpu_seconds: float
    first_error: str | None = None


def _identity(b: bytes) -> bytes:
    return b


def _channel_options() -> list[tuple[str, Any]]:
    # A local subchannel pool: without it grpc shares one connection among the channels.
    return [("grpc.use_local_subchannel_pool", 1)]


async def _drive_aio(plan: Plan, ready: Callable[[], None], go: Any) -> WorkerResult:
    import grpc

    path, payload, _ = _requests(plan.scenario)
    pool = [
        grpc.aio.insecure_channel(plan.target, options=_channel_options())
        for _ in range(plan.channels)
    ]
    for channel in pool:
        await asyncio.wait_for(channel.channel_ready(), 10)
    unary = [
        c.unary_unary(path, request_serializer=_identity, response_deserializer=_identity)
        for c in pool
    ]
    latencies: list[int] = []
    errors = 0
    first_error: str | None = None

    def failed(exc: grpc.RpcError) -> None:
        nonlocal errors, first_error
        errors += 1
        if first_error is None:
            first_error = f"{exc.code()}: {exc.details()}"  # type: ignore[attr-defined]

    streams: list[Any] = []
    if plan.scenario == "stream":
        # Open every stream, and answer one batch on it, before the clock starts: the scenario
        # is long-lived streams. (Opening them under load measures something else: grpc.aio
        # accepts one new call per event-loop round, and while the server is busy with
        # batches for the streams it already has, each round is long. BENCHMARKS.md.)
        for channel in pool:
            for _ in range(plan.concurrency):
                call = channel.stream_stream(
                    path, request_serializer=_identity, response_deserializer=_identity
                )(timeout=plan.duration + 60)
                await call.write(payload)
                await call.read()
                streams.append(call)
    ready()
    await asyncio.to_thread(go.wait)
    cpu0 = time.process_time()
    start = time.perf_counter()
    end = start + plan.duration
    end_ns = time.perf_counter_ns() + int(plan.duration * 1e9)

    async def closed_lane(call: Any) -> None:
        while True:
            t0 = time.perf_counter_ns()
            if t0 >= end_ns:
                return
            try:
                await call(payload, timeout=10)
            except grpc.RpcError as exc:
                failed(exc)
                continue
            latencies.append((time.perf_counter_ns() - t0) // 1000)

    async def one_call(call: Any, due_ns: int) -> None:
        try:
            await call(payload, timeout=10)
        except grpc.RpcError as exc:
            failed(exc)
            return
        latencies.append((time.perf_counter_ns() - due_ns) // 1000)

    async def open_loop(rate: float) -> None:
        interval_ns = int(1e9 / rate)
        due = time.perf_counter_ns()
        n = 0
        pending: set[asyncio.Task[None]] = set()
        while due < end_ns:
            now = time.perf_counter_ns()
            while due <= now and due < end_ns:  # fire every call that is due, late or not
                task = asyncio.create_task(one_call(unary[n % len(unary)], due))
                pending.add(task)
                task.add_done_callback(pending.discard)
                n += 1
                due += interval_ns
            await asyncio.sleep(max(_TICK_S, (due - time.perf_counter_ns()) / 1e9))
        if pending:
            await asyncio.wait(pending)

    async def stream_lane(call: Any) -> None:
        try:
            while time.perf_counter() < end:
                t0 = time.perf_counter_ns()
                await call.write(payload)
                if await call.read() is grpc.aio.EOF:
                    break
                latencies.append((time.perf_counter_ns() - t0) // 1000)
            await call.done_writing()
            while await call.read() is not grpc.aio.EOF:
                pass
        except grpc.RpcError as exc:
            failed(exc)

    if plan.scenario == "stream":
        await asyncio.gather(*(stream_lane(call) for call in streams))
    elif plan.rate:
        await open_loop(plan.rate)
    else:
        await asyncio.gather(*(closed_lane(c) for c in unary for _ in range(plan.concurrency)))
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    for channel in pool:
        await channel.close(None)
    return WorkerResult(len(latencies), errors, latencies, seconds, cpu, first_error)


def _drive_sync(plan: Plan, ready: Callable[[], None], go: Any) -> WorkerResult:
    """Blocking stubs in threads: each thread owns one in-flight call (unary scenarios)."""
    import grpc

    path, payload, _ = _requests(plan.scenario)
    pool = [
        grpc.insecure_channel(plan.target, options=_channel_options()) for _ in range(plan.channels)
    ]
    for channel in pool:
        grpc.channel_ready_future(channel).result(timeout=10)
    calls = [
        c.unary_unary(path, request_serializer=_identity, response_deserializer=_identity)
        for c in pool
    ]
    per_thread: list[list[int]] = []
    errors = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(plan.channels * plan.concurrency + 1)
    end_ns = [0]

    def lane(call: Any) -> None:
        mine: list[int] = []
        per_thread.append(mine)
        barrier.wait()
        while True:
            t0 = time.perf_counter_ns()
            if t0 >= end_ns[0]:
                return
            try:
                call(payload, timeout=10)
            except grpc.RpcError:
                with lock:
                    errors[0] += 1
                continue
            mine.append((time.perf_counter_ns() - t0) // 1000)

    threads = [
        threading.Thread(target=lane, args=(call,), daemon=True)
        for call in calls
        for _ in range(plan.concurrency)
    ]
    for thread in threads:
        thread.start()
    ready()
    go.wait()
    cpu0 = time.process_time()
    start = time.perf_counter()
    end_ns[0] = time.perf_counter_ns() + int(plan.duration * 1e9)
    barrier.wait()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    for channel in pool:
        channel.close()
    latencies = [x for mine in per_thread for x in mine]
    return WorkerResult(len(latencies), errors[0], latencies, seconds, cpu)


def _worker(plan: Plan, out: Any, go: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:

        def ready() -> None:
            out.put(("ready", None))

        if plan.client == "sync" and plan.scenario != "stream" and not plan.rate:
            result = _drive_sync(plan, ready, go)
        elif plan.loop == "uvloop":
            import uvloop  # not a dependency: pip install uvloop to try it

            result = uvloop.run(_drive_aio(plan, ready, go))
        else:
            result = asyncio.run(_drive_aio(plan, ready, go))
        out.put(("done", asdict(result)))
    except BaseException as exc:  # the parent must hear about it, not wait for ever
        out.put(("failed", f"{type(exc).__name__}: {exc}"))
        raise


# -- one scenario -------------------------------------------------------------------------


def _percentile(sorted_values: Sequence[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[index] / 1000.0


def _cpu_ticks(pids: Sequence[int]) -> int | None:
    """utime + stime of ``pids`` (every thread), in clock ticks; None when one is unreadable."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            return None
        total += int(fields[11]) + int(fields[12])
    return total


def run_scenario(
    target: str,
    scenario: str,
    *,
    duration: float,
    procs: int,
    channels: int,
    concurrency: int,
    rate: float | None,
    client: str = "aio",
    loop: str = "asyncio",
    server_pids: Sequence[int] = (),
) -> dict[str, Any]:
    _, _, evals = _requests(scenario)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    go = ctx.Event()
    per_proc_rate = rate / procs if rate else None
    plan = Plan(target, scenario, duration, channels, concurrency, per_proc_rate, client, loop)
    workers = [ctx.Process(target=_worker, args=(plan, out, go)) for _ in range(procs)]
    for w in workers:
        w.start()
    results: list[WorkerResult] = []
    try:
        pending = procs
        while pending:
            kind, body = out.get(timeout=60)
            if kind == "failed":
                raise RuntimeError(f"a load process failed: {body}")
            pending -= kind == "ready"
        before = _cpu_ticks(server_pids)
        go.set()
        while len(results) < procs:
            kind, body = out.get(timeout=duration + 60)
            if kind == "failed":
                raise RuntimeError(f"a load process failed: {body}")
            results.append(WorkerResult(**body))
        after = _cpu_ticks(server_pids)
    finally:
        for w in workers:
            w.join(5)
            if w.is_alive():
                w.kill()
    latencies = sorted(x for r in results for x in r.latencies_us)
    calls = sum(r.calls for r in results)
    seconds = max(r.seconds for r in results)
    server_cpu = (after - before) / _TICK if server_pids and before is not None and after else None
    first_error = next((r.first_error for r in results if r.first_error), None)
    return {
        "scenario": scenario,
        "rpc_per_s": round(calls / seconds),
        "evals_per_s": round(calls * evals / seconds),
        "p50_ms": round(_percentile(latencies, 0.50), 3),
        "p99_ms": round(_percentile(latencies, 0.99), 3),
        "p999_ms": round(_percentile(latencies, 0.999), 3),
        "calls": calls,
        "errors": sum(r.errors for r in results),
        "first_error": first_error,
        "client_us": round(sum(r.cpu_seconds for r in results) / calls * 1e6, 1) if calls else None,
        "server_us": round(server_cpu / calls * 1e6, 1) if server_cpu and calls else None,
        "procs": procs,
        "channels": channels,
        "concurrency": concurrency,
        "rate": rate,
        "client": client,
        "client_loop": loop if client == "aio" or scenario == "stream" or rate else None,
        "seconds": round(seconds, 2),
    }


# -- servers this tool starts -------------------------------------------------------------


_UVLOOP_SITECUSTOMIZE = """\
import asyncio
import os

if os.environ.get("FLAGEDGE_EVENT_LOOP") == "uvloop":
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
"""


class _Server:
    """A server child on a free loopback port: ``flagedge serve`` with the 200 mixed flags, or
    benchmarks/echo_server.py. Waits for one ``serving gRPC on HOST:PORT`` line per worker."""

    def __init__(
        self, kind: str, workers: int, extra: Sequence[str] = (), loop: str = "asyncio"
    ) -> None:
        self.kind = kind
        self._dir = tempfile.TemporaryDirectory()
        env = dict(os.environ)
        if loop == "uvloop":
            env["FLAGEDGE_EVENT_LOOP"] = "uvloop"
            # Until `flagedge serve` picks its loop with flagedge.server.loop.run, a
            # sitecustomize that installs uvloop's policy puts every server process (workers
            # included: they inherit PYTHONPATH) on uvloop.
            with open(os.path.join(self._dir.name, "sitecustomize.py"), "w") as f:
                f.write(_UVLOOP_SITECUSTOMIZE)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (self._dir.name, os.getcwd(), env.get("PYTHONPATH")) if p
            )
        if kind == "echo":
            command = [sys.executable, "-m", "benchmarks.echo_server", "--port=0"]
            if loop == "uvloop":
                command.append("--uvloop")
        else:
            path = os.path.join(self._dir.name, "flags.json")
            with open(path, "w") as f:
                json.dump(mixed_doc(200), f)
            command = [
                sys.executable,
                "-m",
                "flagedge.server",
                f"--flags={path}",
                "--management-port=0",
                "--log-level=INFO",
            ]
        command += ["--host=127.0.0.1", "--port=0", f"--workers={workers}", *extra]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
        assert self.process.stderr is not None
        # Read its log in a thread for ever (so the server never blocks on a full pipe), and
        # wait here for one ``serving gRPC on HOST:PORT`` line per worker, or 30 s.
        lines: queue.Queue[str] = queue.Queue()
        stream = self.process.stderr
        threading.Thread(target=lambda: [lines.put(x) for x in stream], daemon=True).start()
        self.port = 0
        ready = 0
        log: list[str] = []
        deadline = time.monotonic() + 30
        while ready < workers and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            log = [*log[-19:], line]
            found = re.search(r"serving gRPC on [^ ]+:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                ready += 1
        if not self.port or self.process.poll() is not None:
            self.process.kill()
            raise RuntimeError(f"the {kind} server did not start:\n{''.join(log)}")
        if ready < workers:
            print(f"note: {ready} of {workers} {kind} workers said they serve", file=sys.stderr)
        self.pids = [self.process.pid, *_children(self.process.pid)]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._dir.cleanup()


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


# -- reporting ----------------------------------------------------------------------------

_NUMBERS = ("rpc_per_s", "evals_per_s", "p50_ms", "p99_ms", "p999_ms", "client_us", "server_us")


def _median(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over repeated runs (figure by figure, not one whole run)."""
    out = dict(rows[-1])
    for name in _NUMBERS:
        values = [r[name] for r in rows if r.get(name) is not None]
        out[name] = statistics.median(values) if values else None
    out["runs"] = len(rows)
    out["errors"] = sum(r["errors"] for r in rows)
    return out


def _line(row: dict[str, Any]) -> str:
    cpu = ""
    if row.get("client_us") is not None:
        cpu += f"  client {row['client_us']:.0f} us/call"
    if row.get("server_us") is not None:
        cpu += f"  server {row['server_us']:.0f} us/call"
    return (
        f"{row.get('server', ''):8} {row['scenario']:9} {row['rpc_per_s']:>9,.0f} rpc/s"
        f" {row['evals_per_s']:>11,.0f} evals/s  p50 {row['p50_ms']:.2f} ms"
        f"  p99 {row['p99_ms']:.2f} ms  p999 {row['p999_ms']:.2f} ms"
        f"  errors {row['errors']}{cpu}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--target", help="host:port of a running server (default: start one)")
    parser.add_argument(
        "--server-pid",
        type=int,
        action="append",
        default=[],
        help="with --target: a server process to charge CPU time to (repeatable)",
    )
    parser.add_argument(
        "--server",
        choices=("flagedge", "echo"),
        default="flagedge",
        help="which server to start when there is no --target",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="start flagedge and the echo server and run each scenario on both, interleaved",
    )
    parser.add_argument("--server-workers", type=int, default=1)
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="an extra argument for the server(s) this tool starts (repeatable)",
    )
    parser.add_argument("--scenario", choices=[*SCENARIOS, "every"], default="every")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per scenario")
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario; medians")
    parser.add_argument("--procs", type=int, default=1, help="load processes")
    parser.add_argument("--channels", type=int, default=4, help="channels per process")
    parser.add_argument("--concurrency", type=int, default=16, help="in-flight calls per channel")
    parser.add_argument(
        "--client",
        choices=("aio", "sync"),
        default="aio",
        help="grpc.aio in one event loop per process, or blocking stubs in threads",
    )
    parser.add_argument(
        "--client-loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop of the aio load processes; auto: uvloop when installed (lighter)",
    )
    parser.add_argument(
        "--server-loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop of the servers this tool starts",
    )
    parser.add_argument("--rate", type=float, help="open loop: total calls per second")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)

    scenarios = SCENARIOS if args.scenario == "every" else (args.scenario,)
    if args.rate:
        if args.scenario == "stream":
            parser.error("--rate applies to unary scenarios, not stream")
        scenarios = tuple(s for s in scenarios if s != "stream")

    client_loop = args.client_loop
    if client_loop == "auto":
        client_loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    servers: list[tuple[str, str, list[int]]] = []  # (name, target, pids)
    started: list[_Server] = []
    try:
        if args.target:
            servers.append(("target", args.target, args.server_pid))
        else:
            kinds = ("echo", "flagedge") if args.compare else (args.server,)
            for kind in kinds:
                server = _Server(kind, args.server_workers, args.server_arg, args.server_loop)
                started.append(server)
                servers.append((kind, server.target, server.pids))
        rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for run in range(args.repeat):
            for scenario in scenarios:
                for name, target, pids in servers:
                    row = run_scenario(
                        target,
                        scenario,
                        duration=args.duration,
                        procs=args.procs,
                        channels=args.channels,
                        concurrency=args.concurrency,
                        rate=args.rate,
                        client=args.client,
                        loop=client_loop,
                        server_pids=pids,
                    )
                    row["server"] = name
                    row["server_loop"] = None if args.target else args.server_loop
                    row["server_workers"] = None if args.target else args.server_workers
                    row["run"] = run + 1
                    rows.setdefault((name, scenario), []).append(row)
                    if args.json:
                        print(json.dumps(row), flush=True)
                    elif args.repeat > 1:
                        print(f"run {run + 1}: {_line(row)}", flush=True)
                    else:
                        print(_line(row), flush=True)
        if args.repeat > 1 or args.compare:
            _summary(rows, scenarios, [name for name, _, _ in servers], args.json)
    finally:
        for server in started:
            server.stop()
    return 0


def _summary(
    rows: dict[tuple[str, str], list[dict[str, Any]]],
    scenarios: Sequence[str],
    names: Sequence[str],
    as_json: bool,
) -> None:
    if not as_json:
        print(f"\nmedians of {len(next(iter(rows.values())))} run(s):")
    for scenario in scenarios:
        medians = {name: _median(rows[name, scenario]) for name in names}
        for name in names:
            summary = {**medians[name], "summary": True}
            summary.pop("first_error", None)
            if "echo" in medians and name != "echo" and medians["echo"]["rpc_per_s"]:
                summary["vs_echo"] = round(
                    medians[name]["rpc_per_s"] / medians["echo"]["rpc_per_s"], 3
                )
            if as_json:
                print(json.dumps(summary), flush=True)
            else:
                ratio = f"  = {summary['vs_echo']:.2f} x echo" if "vs_echo" in summary else ""
                print(_line(summary) + ratio, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
