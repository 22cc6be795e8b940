"""Runs: one timed run of a scenario against a target (its load processes started together,
their counts merged into a row of figures), and every scenario on every target, repeated.

    run_matrix(targets, scenarios, load, workload, repeat)
        probe each target once per scenario (evaluations per call)
        repeat x scenario x target ─► run_scenario ─► a row (on_row)
        ─► one summary row per (target, scenario): medians, vs_echo, vs_reference
"""

from __future__ import annotations

import importlib.util
import multiprocessing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flagedge.bench.figures import QUANTILES, TICKS_PER_S, cpu_ticks, median_row, percentile
from flagedge.bench.scenarios import SCENARIOS, Workload, bench_doc
from flagedge.bench.target import LoadError, Secure, Target, probe
from flagedge.bench.worker import Plan, WorkerResult, run_worker


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
    workers = [ctx.Process(target=run_worker, args=(plan, out, go)) for _ in range(load.procs)]
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
        before = cpu_ticks(server_pids)
        go.set()
        while len(results) < load.procs:
            kind, body = out.get(timeout=load.duration + 60)
            if kind == "failed":
                raise LoadError(f"a load process failed: {body}")
            results.append(WorkerResult(**body))
        after = cpu_ticks(server_pids)
    finally:
        for w in workers:
            w.join(5)
            if w.is_alive():
                w.kill()
    latencies = sorted(x for r in results for x in r.latencies_us)
    calls = sum(r.calls for r in results)
    seconds = max(r.seconds for r in results)
    server_cpu = (
        (after - before) / TICKS_PER_S if server_pids and before is not None and after else None
    )
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
