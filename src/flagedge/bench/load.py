"""Load generator for flagedge, or any flagd-compatible server: calls/s, evaluations/s, latency.

    flagedge bench load --target 127.0.0.1:8013                      # every scenario
    flagedge bench load --target flagd:8013 --scenario flagd         # flagd's methods only
    flagedge bench load --target H:P --scenario resolve --rate 4000 --flag my-flag \\
        --context '{"targetingKey": "u1", "plan": "gold"}' --json
    flagedge bench load --target edge.internal:8013 --tls-ca ca.crt --token-file token \\
        --scenario resolve                                         # a secured deployment

Scenarios, one per evaluation method (``--scenario a,b``, or a group: every, native, flagd):

    evaluate         flagedge.v1 Evaluate: one flag (--flag), one context
    all              flagedge.v1 EvaluateAll: every flag the server has, one context
    batch            flagedge.v1 EvaluateBatch: --batch-contexts contexts x --batch-flags
    stream           flagedge.v1 EvaluateStream: the same batches over long-lived bidi streams
    resolve          flagd.evaluation.v2 ResolveBoolean (what OpenFeature providers call)
    resolve_string   ... ResolveString, resolve_int ResolveInt, resolve_float ResolveFloat,
                     resolve_object ResolveObject (v2)
    v1_resolve       flagd.evaluation.v1 ResolveBoolean
    v1_resolve_all   flagd.evaluation.v1 ResolveAll

Against a flagd server use the flagd scenarios (``--scenario flagd`` or ``--scenario resolve``);
the native ones need flagedge.v1. The flags default to the benchmark flag set
(flagedge.bench.workloads, served by ``python -m benchmarks.load``); against your own server,
name your flags (--flag, --string-flag, ...) and a context. Before the clock starts, one call
of each scenario is made and decoded: a missing flag or an error answer stops the run with the
server's message, and the answer tells how many evaluations a call carries (EvaluateAll,
ResolveAll).

How it loads. Load processes (--procs), each with its own channels (--channels, each its own
HTTP/2 connection, so a server's SO_REUSEPORT workers share them) and calls in flight per
channel (--concurrency). Requests are serialised once up front and responses are never decoded
on the clock, so the generator spends its CPU on gRPC alone: on one machine, every microsecond
the generator saves is one the server can use. All processes connect first (and open their
streams), then start together on a signal and stop after --duration seconds.

--rate R is an open loop: R calls/s in total, each scheduled at a fixed time whatever the state
of the others, latency measured from the scheduled time (so a stalled server shows up as
latency instead of as fewer calls: no coordinated omission). The loop wakes at most once a
millisecond, so latencies include up to 1 ms of sending late. Without --rate each lane sends
its next call as soon as the previous one returns (throughput at saturation).

A secured target: --tls (the system's trust store) or --tls-ca FILE for TLS, --tls-cert and
--tls-key for mutual TLS, --tls-server-name when the certificate names another host than the
target, --token-file for an auth file's token (sent as ``authorization: Bearer`` metadata on
every call; the file keeps it off the command line, which ``ps`` shows).

With --server-pid (processes on this machine), the server is charged its CPU time:
``server_us`` is server CPU per call and ``client_us`` the generator's; on a shared, noisy
machine they are steadier than calls/s. Each row also carries ``cdf``: latency in ms at the
quantiles in ``QUANTILES``, enough to draw the distribution.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import multiprocessing
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from flagedge.bench.workloads import mixed_context, mixed_doc, mixed_specs, rollout_contexts

_TICK = os.sysconf("SC_CLK_TCK")
# The open loop wakes at most every _TICK_S and sends every call that is due by then: one
# wake-up per call would cost the generator more CPU than the calls themselves. A call sent
# late by up to this much is charged the delay (latency runs from its scheduled time).
_TICK_S = 0.001

#: Quantiles at which every row reports its latency distribution (``cdf``).
QUANTILES: tuple[float, ...] = (
    *(i / 20 for i in range(20)),
    0.96,
    0.97,
    0.98,
    0.99,
    0.995,
    0.999,
    1.0,
)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    api: str  # "flagedge.v1", "flagd.v2" or "flagd.v1": what the server must speak
    method: str  # full gRPC method path
    title: str
    stream: bool = False


_V2 = "/flagd.evaluation.v2.Service/"
_V1 = "/flagd.evaluation.v1.Service/"
_NATIVE = "/flagedge.v1.Evaluation/"

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("evaluate", "flagedge.v1", _NATIVE + "Evaluate", "Evaluate"),
        Scenario("all", "flagedge.v1", _NATIVE + "EvaluateAll", "EvaluateAll"),
        Scenario("batch", "flagedge.v1", _NATIVE + "EvaluateBatch", "EvaluateBatch"),
        Scenario("stream", "flagedge.v1", _NATIVE + "EvaluateStream", "EvaluateStream", True),
        Scenario("resolve", "flagd.v2", _V2 + "ResolveBoolean", "v2 ResolveBoolean"),
        Scenario("resolve_string", "flagd.v2", _V2 + "ResolveString", "v2 ResolveString"),
        Scenario("resolve_int", "flagd.v2", _V2 + "ResolveInt", "v2 ResolveInt"),
        Scenario("resolve_float", "flagd.v2", _V2 + "ResolveFloat", "v2 ResolveFloat"),
        Scenario("resolve_object", "flagd.v2", _V2 + "ResolveObject", "v2 ResolveObject"),
        Scenario("v1_resolve", "flagd.v1", _V1 + "ResolveBoolean", "v1 ResolveBoolean"),
        Scenario("v1_resolve_all", "flagd.v1", _V1 + "ResolveAll", "v1 ResolveAll"),
    )
}
GROUPS: dict[str, tuple[str, ...]] = {
    "every": tuple(SCENARIOS),
    "native": tuple(n for n, s in SCENARIOS.items() if s.api == "flagedge.v1"),
    "flagd": tuple(n for n, s in SCENARIOS.items() if s.api != "flagedge.v1"),
}


def parse_scenarios(text: str) -> tuple[str, ...]:
    """``resolve,all`` or a group name -> scenario names, in the order given."""
    names: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        found = GROUPS.get(part) or ((part,) if part in SCENARIOS else None)
        if found is None:
            known = ", ".join([*GROUPS, *SCENARIOS])
            raise argparse.ArgumentTypeError(f"unknown scenario {part!r} (known: {known})")
        names.extend(n for n in found if n not in names)
    if not names:
        raise argparse.ArgumentTypeError("no scenario named")
    return tuple(names)


# -- what to ask ---------------------------------------------------------------------------

# Flags of the types the mixed set lacks, for ResolveInt/Float/Object (added by bench_doc).
INT_FLAG = "typed-int"
FLOAT_FLAG = "typed-float"
OBJECT_FLAG = "typed-object"


def bench_doc() -> dict[str, Any]:
    """The flag set a benchmark server serves: the 200 mixed flags of the workloads, plus one
    static flag each of the integer, float and object types."""
    doc = mixed_doc(200)
    for key, values in (
        (INT_FLAG, {"small": 10, "large": 1000}),
        (FLOAT_FLAG, {"low": 0.25, "high": 0.75}),
        (OBJECT_FLAG, {"a": {"colour": "red", "size": 3}, "b": {"colour": "blue"}}),
    ):
        doc["flags"][key] = {
            "state": "ENABLED",
            "variants": values,
            "defaultVariant": next(iter(values)),
        }
    return doc


def _default_flag(kind: str) -> str:
    return next(s.key for s in mixed_specs(200) if s.kind == kind)


@dataclass(frozen=True, slots=True)
class Workload:
    """The flags and context every scenario asks about. Defaults: the benchmark flag set."""

    flag: str = field(default_factory=lambda: _default_flag("targeted"))
    boolean_flag: str = field(default_factory=lambda: _default_flag("rollout"))
    string_flag: str = field(default_factory=lambda: _default_flag("targeted"))
    int_flag: str = INT_FLAG
    float_flag: str = FLOAT_FLAG
    object_flag: str = OBJECT_FLAG
    context: dict[str, Any] = field(default_factory=mixed_context)
    batch_flags: tuple[str, ...] = field(
        default_factory=lambda: tuple(s.key for s in mixed_specs(200)[:10])
    )
    batch_contexts: int = 100

    def request(self, scenario: str) -> bytes:
        """The serialised request of ``scenario``."""
        from flagedge._proto.flagd.evaluation.v1 import evaluation_pb2 as v1
        from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as v2
        from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb

        message: Any
        if scenario == "evaluate":
            message = pb.EvaluateRequest(flag_key=self.flag)
        elif scenario == "all":
            message = pb.EvaluateAllRequest()
        elif scenario in ("batch", "stream"):
            message = pb.EvaluateBatchRequest(flag_keys=list(self.batch_flags))
            for context in rollout_contexts(self.batch_contexts):
                message.contexts.add().update({**self.context, **context})
            return bytes(message.SerializeToString())
        elif scenario == "v1_resolve_all":
            message = v1.ResolveAllRequest()
        else:
            module = v1 if scenario == "v1_resolve" else v2
            kind, key = {
                "resolve": ("Boolean", self.boolean_flag),
                "v1_resolve": ("Boolean", self.boolean_flag),
                "resolve_string": ("String", self.string_flag),
                "resolve_int": ("Int", self.int_flag),
                "resolve_float": ("Float", self.float_flag),
                "resolve_object": ("Object", self.object_flag),
            }[scenario]
            message = getattr(module, f"Resolve{kind}Request")(flag_key=key)
        message.context.update(self.context)
        return bytes(message.SerializeToString())

    def flag_of(self, scenario: str) -> str | None:
        """The one flag a single-flag scenario asks about (None for all, batch, stream)."""
        return {
            "evaluate": self.flag,
            "resolve": self.boolean_flag,
            "v1_resolve": self.boolean_flag,
            "resolve_string": self.string_flag,
            "resolve_int": self.int_flag,
            "resolve_float": self.float_flag,
            "resolve_object": self.object_flag,
        }.get(scenario)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "batch_flags": list(self.batch_flags)}


class LoadError(Exception):
    """The target cannot run a scenario: unreachable, a method it lacks, an error answer."""


def _identity(b: bytes) -> bytes:
    return b


@dataclass(frozen=True, slots=True)
class Secure:
    """How to reach a secured target: TLS (trusting ``ca``, PEM, or the system's roots), a
    client certificate for mutual TLS, the name the server's certificate must carry when it
    is not the target's host, and a token sent on every call. The default: plaintext."""

    tls: bool = False
    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None
    token: str | None = field(default=None, repr=False)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        # Per-call metadata, not call credentials: grpc runs a call-credentials plugin in a
        # Python thread per call, which would cost the generator more than the call.
        return None if self.token is None else (("authorization", f"Bearer {self.token}"),)

    def options(self) -> list[tuple[str, Any]]:
        if self.server_name:
            return [("grpc.ssl_target_name_override", self.server_name)]
        return []

    def credentials(self) -> Any:
        import grpc

        return grpc.ssl_channel_credentials(self.ca, self.key, self.cert)


def _channel_options(secure: Secure | None = None) -> list[tuple[str, Any]]:
    # A local subchannel pool: without it grpc shares one connection among the channels.
    return [("grpc.use_local_subchannel_pool", 1), *(secure.options() if secure else [])]


def _channel(target: str, secure: Secure, options: list[tuple[str, Any]]) -> Any:
    import grpc

    if secure.tls:
        return grpc.secure_channel(target, secure.credentials(), options=options)
    return grpc.insecure_channel(target, options=options)


def _aio_channel(target: str, secure: Secure, options: list[tuple[str, Any]]) -> Any:
    import grpc

    if secure.tls:
        return grpc.aio.secure_channel(target, secure.credentials(), options=options)
    return grpc.aio.insecure_channel(target, options=options)


def probe(
    target: str,
    scenario: str,
    workload: Workload,
    timeout: float = 10.0,
    secure: Secure | None = None,
) -> int:
    """Make one call of ``scenario``, check its answer, return evaluations per call."""
    import grpc

    from flagedge._proto.flagd.evaluation.v1 import evaluation_pb2 as v1
    from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb

    secure = secure or Secure()
    spec = SCENARIOS[scenario]
    payload = workload.request(scenario)
    metadata = secure.metadata
    with _channel(target, secure, secure.options()) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise LoadError(f"{target}: no gRPC server answered within {timeout:g} s") from None
        try:
            if spec.stream:
                call = channel.stream_stream(
                    spec.method, request_serializer=_identity, response_deserializer=_identity
                )
                answer = next(iter(call(iter([payload]), timeout=timeout, metadata=metadata)))
            else:
                answer = channel.unary_unary(
                    spec.method, request_serializer=_identity, response_deserializer=_identity
                )(payload, timeout=timeout, metadata=metadata)
        except grpc.RpcError as exc:
            code = exc.code()
            hint = ""
            if code == grpc.StatusCode.UNIMPLEMENTED and spec.api == "flagedge.v1":
                hint = " (a flagd server has only the flagd scenarios: --scenario flagd)"
            flag = workload.flag_of(scenario)
            asked = f" about flag {flag!r}" if flag else ""
            raise LoadError(
                f"{scenario}: asked{asked}, {target} answered {code.name}: {exc.details()}{hint}"
            ) from None
    if scenario == "evaluate":
        result = pb.EvaluateResponse.FromString(answer).result
        if result.error_code:
            raise LoadError(
                f"evaluate: flag {workload.flag!r}: {pb.ErrorCode.Name(result.error_code)} "
                f"{result.error_message} (name one with --flag)"
            )
        return 1
    if scenario == "all":
        return max(1, len(pb.EvaluateAllResponse.FromString(answer).results))
    if scenario == "v1_resolve_all":
        return max(1, len(v1.ResolveAllResponse.FromString(answer).flags))
    if spec.stream or scenario == "batch":
        return len(workload.batch_flags) * workload.batch_contexts
    return 1


# -- one load process ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
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
        _aio_channel(plan.target, secure, _channel_options(secure)) for _ in range(plan.channels)
    ]
    for channel in pool:
        await asyncio.wait_for(channel.channel_ready(), 10)
    unary = [
        c.unary_unary(plan.method, request_serializer=_identity, response_deserializer=_identity)
        for c in pool
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
                    plan.method, request_serializer=_identity, response_deserializer=_identity
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
        # hottest path, and every call it saves is CPU the server can use.
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
    pool = [_channel(plan.target, secure, _channel_options(secure)) for _ in range(plan.channels)]
    for channel in pool:
        grpc.channel_ready_future(channel).result(timeout=10)
    calls = [
        c.unary_unary(plan.method, request_serializer=_identity, response_deserializer=_identity)
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


def _worker(plan: Plan, out: Any, go: Any) -> None:
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


# -- one scenario -------------------------------------------------------------------------


def percentile(sorted_values: Sequence[int], q: float) -> float:
    """The ``q`` quantile of sorted microseconds, in milliseconds (nearest rank)."""
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


@dataclass(frozen=True, slots=True)
class Load:
    """How to load a target (the options common to every scenario)."""

    duration: float = 5.0
    procs: int = 1
    channels: int = 4
    concurrency: int = 16
    rate: float | None = None
    client: str = "aio"
    loop: str = "auto"  # of the aio load processes: auto = uvloop when installed

    def client_loop(self) -> str:
        if self.loop != "auto":
            return self.loop
        return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def run_scenario(
    target: str,
    scenario: str,
    load: Load,
    workload: Workload | None = None,
    *,
    server_pids: Sequence[int] = (),
    evals_per_call: int | None = None,
    secure: Secure | None = None,
) -> dict[str, Any]:
    """One timed run of ``scenario`` against ``target``: a row of figures.

    ``evals_per_call`` None probes the target first (one checked call); pass it to skip the
    probe, e.g. for an echo server whose answers are not real ones."""
    workload = workload or Workload()
    secure = secure or Secure()
    spec = SCENARIOS[scenario]
    if spec.stream and load.rate:
        raise LoadError("--rate applies to unary scenarios, not stream")
    if evals_per_call is None:
        evals_per_call = probe(target, scenario, workload, secure=secure)
    evals = evals_per_call
    loop = load.client_loop()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    go = ctx.Event()
    plan = Plan(
        target,
        spec.method,
        spec.stream,
        workload.request(scenario),
        load.duration,
        load.channels,
        load.concurrency,
        load.rate / load.procs if load.rate else None,
        load.client,
        loop,
        secure,
    )
    workers = [ctx.Process(target=_worker, args=(plan, out, go)) for _ in range(load.procs)]
    for w in workers:
        w.start()
    results: list[WorkerResult] = []
    try:
        pending = load.procs
        while pending:
            kind, body = out.get(timeout=60)
            if kind == "failed":
                raise LoadError(f"a load process failed: {body}")
            pending -= kind == "ready"
        before = _cpu_ticks(server_pids)
        go.set()
        while len(results) < load.procs:
            kind, body = out.get(timeout=load.duration + 60)
            if kind == "failed":
                raise LoadError(f"a load process failed: {body}")
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
        "method": spec.method,
        "rpc_per_s": round(calls / seconds),
        "evals_per_s": round(calls * evals / seconds),
        "evals_per_call": evals,
        "p50_ms": round(percentile(latencies, 0.50), 3),
        "p99_ms": round(percentile(latencies, 0.99), 3),
        "p999_ms": round(percentile(latencies, 0.999), 3),
        "cdf": [round(percentile(latencies, q), 3) for q in QUANTILES] if latencies else [],
        "calls": calls,
        "errors": sum(r.errors for r in results),
        "first_error": first_error,
        "client_us": round(sum(r.cpu_seconds for r in results) / calls * 1e6, 1) if calls else None,
        "server_us": round(server_cpu / calls * 1e6, 1) if server_cpu and calls else None,
        "procs": load.procs,
        "channels": load.channels,
        "concurrency": load.concurrency,
        "rate": load.rate,
        "client": load.client,
        "client_loop": loop if load.client == "aio" or spec.stream or load.rate else None,
        "seconds": round(seconds, 2),
    }


# -- several targets, several scenarios, repeated -------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    address: str
    pids: tuple[int, ...] = ()
    echo: bool = False  # answers with its request: no probe, evaluations counted as the others
    secure: Secure = field(default_factory=Secure)


_NUMBERS = ("rpc_per_s", "evals_per_s", "p50_ms", "p99_ms", "p999_ms", "client_us", "server_us")


def median_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over repeated runs (figure by figure, not one whole run)."""
    out = dict(rows[-1])
    for name in _NUMBERS:
        values = [r[name] for r in rows if r.get(name) is not None]
        out[name] = statistics.median(values) if values else None
    cdfs = [r["cdf"] for r in rows if r.get("cdf")]
    out["cdf"] = [statistics.median(col) for col in zip(*cdfs, strict=True)] if cdfs else []
    out["runs"] = len(rows)
    out["errors"] = sum(r["errors"] for r in rows)
    out.pop("run", None)
    out.pop("first_error", None)
    out["first_errors"] = sorted({r["first_error"] for r in rows if r.get("first_error")})
    return out


def run_matrix(
    targets: Sequence[Target],
    scenarios: Iterable[str],
    load: Load,
    workload: Workload | None = None,
    *,
    repeat: int = 1,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    reference: str | None = None,
) -> list[dict[str, Any]]:
    """Every scenario on every target, targets interleaved per scenario, ``repeat`` rounds;
    returns one summary row per (target, scenario): medians, and ``vs_echo`` (this target's
    calls/s over the echo target's, same run) where an echo target is among ``targets``.
    ``reference`` names a target the others are compared with the same way (``vs_reference``:
    e.g. a TLS server's calls/s over the same server's in plaintext)."""
    workload = workload or Workload()
    scenarios = tuple(scenarios)
    real = [t for t in targets if not t.echo]
    evals: dict[str, int] = {}
    for scenario in scenarios:
        counts = {probe(t.address, scenario, workload, secure=t.secure) for t in real}
        if len(counts) > 1:
            raise LoadError(f"{scenario}: the targets disagree on evaluations per call: {counts}")
        evals[scenario] = counts.pop() if counts else probe_count_unknown(scenario, workload)
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in range(repeat):
        for scenario in scenarios:
            for target in targets:
                row = run_scenario(
                    target.address,
                    scenario,
                    load,
                    workload,
                    server_pids=target.pids,
                    evals_per_call=evals[scenario],
                    secure=target.secure,
                )
                row["server"] = target.name
                row["run"] = run + 1
                runs.setdefault((target.name, scenario), []).append(row)
                if on_row is not None:
                    on_row(row)
    summary: list[dict[str, Any]] = []
    echo = next((t.name for t in targets if t.echo), None)
    for scenario in scenarios:
        medians = {t.name: median_row(runs[t.name, scenario]) for t in targets}
        for target in targets:
            row = {**medians[target.name], "summary": True}
            if echo and not target.echo and medians[echo]["rpc_per_s"]:
                row["vs_echo"] = round(row["rpc_per_s"] / medians[echo]["rpc_per_s"], 3)
            if reference and target.name != reference and medians[reference]["rpc_per_s"]:
                row["reference"] = reference
                row["vs_reference"] = round(row["rpc_per_s"] / medians[reference]["rpc_per_s"], 3)
            summary.append(row)
    return summary


def probe_count_unknown(scenario: str, workload: Workload) -> int:
    """Evaluations per call when only an echo target is loaded: what the request asks for."""
    if scenario in ("batch", "stream"):
        return len(workload.batch_flags) * workload.batch_contexts
    if scenario in ("all", "v1_resolve_all"):
        return len(bench_doc()["flags"])
    return 1


def line(row: dict[str, Any]) -> str:
    """One row as a line of text."""
    cpu = ""
    if row.get("client_us") is not None:
        cpu += f"  client {row['client_us']:.0f} us/call"
    if row.get("server_us") is not None:
        cpu += f"  server {row['server_us']:.0f} us/call"
    ratio = f"  = {row['vs_echo']:.2f} x echo" if row.get("vs_echo") is not None else ""
    if row.get("vs_reference") is not None:
        ratio += f"  = {row['vs_reference']:.2f} x {row['reference']}"
    return (
        f"{row.get('server', ''):8} {row['scenario']:14} {row['rpc_per_s']:>9,.0f} rpc/s"
        f" {row['evals_per_s']:>11,.0f} evals/s  p50 {row['p50_ms']:.2f} ms"
        f"  p99 {row['p99_ms']:.2f} ms  p999 {row['p999_ms']:.2f} ms"
        f"  errors {row['errors']}{cpu}{ratio}"
    )


# -- command line -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, *, target_required: bool = True) -> None:
    """The load options (``flagedge bench load``; benchmarks/load.py adds server options)."""
    parser.add_argument(
        "--target",
        required=target_required,
        metavar="HOST:PORT",
        help="the server to load" + ("" if target_required else " (default: start one)"),
    )
    parser.add_argument(
        "--server-pid",
        type=int,
        action="append",
        default=[],
        metavar="PID",
        help="a server process on this machine to charge CPU time to (repeatable)",
    )
    parser.add_argument(
        "--scenario",
        type=parse_scenarios,
        default=GROUPS["every"],
        metavar="NAMES",
        help="comma-separated scenarios, or every, native, flagd (default every): "
        + ", ".join(SCENARIOS),
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
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
    parser.add_argument("--rate", type=float, help="open loop: total calls per second")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    s = parser.add_argument_group("a secured target (README, Security)")
    s.add_argument("--tls", action="store_true", help="TLS, trusting the system's roots")
    s.add_argument("--tls-ca", metavar="FILE", help="TLS, trusting this CA (PEM)")
    s.add_argument("--tls-cert", metavar="FILE", help="mutual TLS: the client certificate (PEM)")
    s.add_argument("--tls-key", metavar="FILE", help="mutual TLS: the client's key (PEM)")
    s.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="the name the server's certificate carries, when not the target's host",
    )
    s.add_argument(
        "--token-file",
        metavar="FILE",
        help="a token of the target's auth file, sent as authorization: Bearer on every call",
    )
    w = parser.add_argument_group("what to ask (default: the benchmark flag set)")
    w.add_argument("--flag", help="Evaluate's flag")
    w.add_argument("--boolean-flag", help="ResolveBoolean's flag (default: --flag if given)")
    w.add_argument("--string-flag", help="ResolveString's flag")
    w.add_argument("--int-flag", help="ResolveInt's flag")
    w.add_argument("--float-flag", help="ResolveFloat's flag")
    w.add_argument("--object-flag", help="ResolveObject's flag")
    w.add_argument("--context", help="evaluation context as a JSON object")
    w.add_argument("--batch-flags", help="comma-separated flags of EvaluateBatch/Stream")
    w.add_argument("--batch-contexts", type=int, help="contexts per batch (default 100)")


# The option of each Load field that is not named like it.
_LOAD_OPTION = {"loop": "client_loop"}


def load_from_args(args: argparse.Namespace) -> Load:
    """The Load the options name: each field is the option of its name, but ``loop`` is
    --client-loop (the option beside --client)."""
    fields = dataclasses.fields(Load)
    return Load(**{f.name: getattr(args, _LOAD_OPTION.get(f.name, f.name)) for f in fields})


def secure_from_args(args: argparse.Namespace) -> Secure:
    """The Secure the options name; OSError for a file that cannot be read, ValueError for
    options that do not go together."""

    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        with open(path, "rb") as f:
            return f.read()

    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    token = None
    if args.token_file:
        token = (read(args.token_file) or b"").decode().strip()
        if not token:
            raise ValueError(f"--token-file {args.token_file} is empty")
    return Secure(
        tls=bool(args.tls or args.tls_ca or args.tls_cert),
        ca=read(args.tls_ca),
        cert=read(args.tls_cert),
        key=read(args.tls_key),
        server_name=args.tls_server_name,
        token=token,
    )


# The options that set the Workload field of their name as given (when given).
_WORKLOAD_OPTIONS = (
    "flag",
    "string_flag",
    "int_flag",
    "float_flag",
    "object_flag",
    "batch_contexts",
)


def workload_from_args(args: argparse.Namespace) -> Workload:
    """The Workload the options name; raises ValueError for a bad --context."""
    given: dict[str, Any] = {
        name: getattr(args, name) for name in _WORKLOAD_OPTIONS if getattr(args, name)
    }
    if args.boolean_flag or args.flag:
        given["boolean_flag"] = args.boolean_flag or args.flag
    if args.context:
        given["context"] = json.loads(args.context)
        if not isinstance(given["context"], dict):
            raise ValueError("--context must be a JSON object")
    if args.batch_flags:
        given["batch_flags"] = tuple(args.batch_flags.split(","))
    return dataclasses.replace(Workload(), **given)


def run_cli(
    args: argparse.Namespace, targets: Sequence[Target], reference: str | None = None
) -> int:
    """Run the scenarios the options name against ``targets``; print rows; exit status."""
    scenarios: tuple[str, ...] = args.scenario
    if args.rate:
        scenarios = tuple(s for s in scenarios if not SCENARIOS[s].stream)
    load = load_from_args(args)
    workload = workload_from_args(args)

    def show(row: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            prefix = f"run {row['run']}: " if args.repeat > 1 else ""
            print(prefix + line(row), flush=True)

    summary = run_matrix(
        targets, scenarios, load, workload, repeat=args.repeat, on_row=show, reference=reference
    )
    if args.repeat > 1 or len(targets) > 1:
        if not args.json:
            print(f"\nmedians of {args.repeat} run(s):")
        for row in summary:
            print(json.dumps(row) if args.json else line(row), flush=True)
    return 0


def main(args: argparse.Namespace) -> int:
    """``flagedge bench load``: load one running server."""
    target = Target("target", args.target, tuple(args.server_pid), secure=secure_from_args(args))
    return run_cli(args, [target])
