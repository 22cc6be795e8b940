"""One load process: its channels, its lanes (closed loop, open loop, long-lived streams, or
blocking stubs in threads), and the calls and latencies it counts once the clock starts.

    run_worker(plan, out, go)      the process's entry point (multiprocessing, spawn)
        connect, open streams ─► out: ("ready", None)
        go.wait()                  every process starts together
        lanes for plan.duration ─► out: ("done", WorkerResult as a dict) or ("failed", why)
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from flagedge.bench.target import Secure, channel_options, open_aio_channel, open_channel, raw

# The open loop wakes at most every _TICK_S and sends every call that is due by then: one
# wake-up per call would cost the generator more CPU than the calls themselves. A call sent
# late by up to this much is charged the delay (latency runs from its scheduled time).
_TICK_S = 0.001


@dataclass(frozen=True, slots=True)
class Plan:
    """What one load process does: the call (method and serialised request) and how to load."""

    target: str
    method: str
    stream: bool
    payload: bytes
    duration: float
    channels: int
    concurrency: int
    rate: float | None  # calls/s for this process; None: closed loop
    client: str  # "aio" or "sync"
    loop: str = "asyncio"  # or "uvloop"
    secure: Secure = field(default_factory=Secure)


@dataclass(slots=True)
class WorkerResult:
    """What one load process counted while the clock ran."""

    calls: int
    errors: int
    latencies_us: list[int]
    seconds: float
    cpu_seconds: float
    first_error: str | None = None


async def _drive_aio(plan: Plan, ready: Callable[[], None], go: Any) -> WorkerResult:
    import grpc

    eof: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs
    payload = plan.payload
    secure = plan.secure
    metadata = secure.metadata
    pool = [
        open_aio_channel(plan.target, secure, channel_options(secure)) for _ in range(plan.channels)
    ]
    for channel in pool:
        await asyncio.wait_for(channel.channel_ready(), 10)
    unary = [
        c.unary_unary(plan.method, request_serializer=raw, response_deserializer=raw) for c in pool
    ]
    latencies: list[int] = []
    errors = 0
    first_error: str | None = None

    def failed(exc: grpc.RpcError) -> None:
        nonlocal errors, first_error
        errors += 1
        if first_error is None:
            first_error = f"{exc.code()}: {exc.details()}"

    streams: list[Any] = []
    if plan.stream:
        # Open every stream, and answer one batch on it, before the clock starts: the scenario
        # is long-lived streams. (Opening them under load measures something else: grpc.aio
        # accepts one new call per event-loop round, and while the server is busy with
        # batches for the streams it already has, each round is long. BENCHMARKS.md.)
        for channel in pool:
            for _ in range(plan.concurrency):
                open_stream: Any = channel.stream_stream(
                    plan.method, request_serializer=raw, response_deserializer=raw
                )
                call = open_stream(timeout=plan.duration + 60, metadata=metadata)
                await call.write(payload)
                await call.read()
                streams.append(call)
    ready()
    await asyncio.to_thread(go.wait)
    cpu0 = time.process_time()
    start = time.perf_counter()
    end = start + plan.duration
    end_ns = time.perf_counter_ns() + int(plan.duration * 1e9)

    async def calls(call: Any, t0: int, closed: bool) -> None:
        """Calls on ``call``, each timed from ``t0``: for the open loop its one call, due at
        ``t0``; for a closed lane, call after call, each from when it is sent, until the end."""
        while True:
            try:
                await call(payload, timeout=10, metadata=metadata)
            except grpc.RpcError as exc:
                failed(exc)
            else:
                latencies.append((time.perf_counter_ns() - t0) // 1000)
            if not closed or (t0 := time.perf_counter_ns()) >= end_ns:
                return

    async def closed_lane(call: Any) -> None:
        # One coroutine per lane, not one per call: the closed loop is the generator's
        # hottest path, and CPU the generator saves is CPU the server can use.
        t0 = time.perf_counter_ns()
        if t0 < end_ns:
            await calls(call, t0, closed=True)

    async def open_loop(rate: float) -> None:
        interval_ns = int(1e9 / rate)
        due = time.perf_counter_ns()
        n = 0
        pending: set[asyncio.Task[None]] = set()
        while due < end_ns:
            now = time.perf_counter_ns()
            while due <= now and due < end_ns:  # fire every call that is due, late or not
                task = asyncio.create_task(calls(unary[n % len(unary)], due, closed=False))
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
                if await call.read() is eof:
                    break
                latencies.append((time.perf_counter_ns() - t0) // 1000)
            await call.done_writing()
            while await call.read() is not eof:
                pass
        except grpc.RpcError as exc:
            failed(exc)

    if plan.stream:
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

    secure = plan.secure
    metadata = secure.metadata
    pool = [
        open_channel(plan.target, secure, channel_options(secure)) for _ in range(plan.channels)
    ]
    for channel in pool:
        grpc.channel_ready_future(channel).result(timeout=10)
    calls = [
        c.unary_unary(plan.method, request_serializer=raw, response_deserializer=raw) for c in pool
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
                call(plan.payload, timeout=10, metadata=metadata)
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


def run_worker(plan: Plan, out: Any, go: Any) -> None:
    """A load process: carry out ``plan``, telling the parent through ``out`` (a queue)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:

        def ready() -> None:
            out.put(("ready", None))

        if plan.client == "sync" and not plan.stream and not plan.rate:
            result = _drive_sync(plan, ready, go)
        elif plan.loop == "uvloop":
            import uvloop

            result = uvloop.run(_drive_aio(plan, ready, go))
        else:
            result = asyncio.run(_drive_aio(plan, ready, go))
        out.put(("done", asdict(result)))
    except BaseException as exc:  # the parent must hear about it, not wait for ever
        out.put(("failed", f"{type(exc).__name__}: {exc}"))
        raise
