"""The suite's measurements, one function per section; each returns plain JSON-able data.

    engine       evaluations/s per rule kind and flag-set size, in process
    cost         compile time and kill-switch apply time against flag-set size
    memory       RSS of a `flagedge serve` process against flag-set size (/proc)
    grpc         every native and flagd method on flagedge and the bare echo server, same run
    propagation  Redis write -> every edge answers it, idle and under load
    scaling      throughput against `serve --workers N` on this machine (+ the recorded 16-core run)
    peers        the Python peer evaluators on the same workloads, as flagedge's speed-up

Sections reuse the standalone tools (benchmarks/load.py, propagation.py, scaling.py,
peers/run.py); the parameters of each mode are in ``Params``.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.peers import BUILTIN_PEERS
from benchmarks.peers.run import load_evaluators, measure
from flagedge.bench import workloads as W
from flagedge.model import Override, OverrideKind
from flagedge.snapshot import Snapshot

NOW = 1_700_000_000
RESULTS = Path(__file__).resolve().parents[1] / "results"
RECORDED_SCALING = RESULTS / "scaling-16core.json"
# The lent machine's run (BENCHMARKS.md, "Multi-process scaling"); its JSON carries no date.
RECORDED_SCALING_DATE = "2026-11-26"
RECORDED_SCALING_CAVEAT = (
    "Served the benchmark flag set, so every answer was a real evaluation, with the C "
    "speed-ups built; it supersedes a first run whose server lacked the flags the load "
    "generator asked for."
)


@dataclass(frozen=True, slots=True)
class Params:
    """Everything a mode decides; recorded in the report."""

    mode: str
    engine_sizes: tuple[int, ...] = (10, 1_000, 10_000)
    engine_passes: int = 7
    engine_target_ms: float = 50.0
    cost_sizes: tuple[int, ...] = (100, 1_000, 10_000, 50_000)
    compile_repeats: int = 3
    memory_sizes: tuple[int, ...] = (10, 1_000, 10_000)
    grpc_scenarios: tuple[str, ...] = (
        "evaluate",
        "all",
        "batch",
        "stream",
        "resolve",
        "resolve_string",
        "resolve_int",
        "resolve_float",
        "resolve_object",
        "v1_resolve",
        "v1_resolve_all",
    )
    grpc_duration: float = 3.0
    grpc_repeat: int = 3
    grpc_server_workers: int = 2
    grpc_server_loop: str = "uvloop"
    propagation_edges: int = 3
    propagation_flips: int = 200
    propagation_load_rate: float = 3000.0
    scaling_workers: tuple[int, ...] = (1, 2)
    scaling_scenarios: tuple[str, ...] = ("evaluate", "batch")
    scaling_duration: float = 4.0
    peers_passes: int = 15
    peers_target_ms: float = 75.0
    peers_only: tuple[str, ...] = ()  # empty: every peer installed

    @classmethod
    def for_mode(cls, mode: str) -> Params:
        if mode == "full":
            return cls("full")
        if mode == "quick":
            return cls(
                "quick",
                engine_passes=3,
                engine_target_ms=15.0,
                cost_sizes=(100, 1_000, 10_000),
                compile_repeats=1,
                grpc_duration=0.8,
                grpc_repeat=1,
                propagation_edges=2,
                propagation_flips=30,
                propagation_load_rate=1000.0,
                scaling_scenarios=("evaluate",),
                scaling_duration=1.0,
                peers_passes=3,
                peers_target_ms=10.0,
            )
        if mode == "tiny":  # the tests' mode: every section runs, briefly
            return cls(
                "tiny",
                engine_sizes=(10, 100),
                engine_passes=1,
                engine_target_ms=2.0,
                cost_sizes=(10, 100),
                compile_repeats=1,
                memory_sizes=(10,),
                grpc_scenarios=("evaluate", "resolve"),
                grpc_duration=0.3,
                grpc_repeat=1,
                grpc_server_workers=1,
                propagation_edges=1,
                propagation_flips=4,
                propagation_load_rate=200.0,
                scaling_workers=(1,),
                scaling_scenarios=("evaluate",),
                scaling_duration=0.3,
                peers_passes=1,
                peers_target_ms=2.0,
                peers_only=("flagd-core",),
            )
        raise ValueError(f"unknown mode {mode!r}")


# -- engine ---------------------------------------------------------------------------------

KINDS = {"static": "static", "targeted": "targeted", "fractional": "rollout", "sem_ver": "semver"}


def _loop_of(snap: Snapshot, kind: str) -> tuple[Callable[[], object], int]:
    """(a callable doing one pass, evaluations per pass) for a rule kind, or "all"."""
    evaluate = snap.evaluate
    if kind == "all":
        ctx = W.mixed_context()
        every = snap.evaluate_all
        return (lambda: every(ctx, NOW)), len(snap.keys)
    key = next(k for k in snap.keys if k.startswith(f"mixed-{KINDS[kind]}-"))
    if kind == "fractional":  # a new user each call, as the engine benchmarks do
        next_ctx = itertools.cycle(W.rollout_contexts(1000)).__next__
        return (lambda: evaluate(key, next_ctx(), NOW)), 1
    ctx = W.mixed_context()
    return (lambda: evaluate(key, ctx, NOW)), 1


def engine(params: Params) -> dict[str, Any]:
    target_ns = int(params.engine_target_ms * 1e6)
    empty = measure(lambda: None, params.engine_passes, target_ns)
    rows = []
    for size in params.engine_sizes:
        snap = Snapshot.build(W.mixed_doc(size))
        for kind in (*KINDS, "all"):
            fn, per = _loop_of(snap, kind)
            m = measure(fn, params.engine_passes, target_ns)
            rows.append(
                {
                    "kind": kind,
                    "flags": size,
                    "evals_per_call": per,
                    "ns_per_eval": round(m["best_ns_per_call"] / per, 2),
                    "median_ns_per_eval": round(m["median_ns_per_call"] / per, 2),
                    "evals_per_s": round(1e9 * per / m["best_ns_per_call"]),
                }
            )
        del snap
    return {
        "unit": "evaluations/s from the best of the timed passes (median pass kept too)",
        "harness_ns_per_call": round(empty["best_ns_per_call"], 2),
        "rows": rows,
    }


# -- cost against flag-set size -------------------------------------------------------------


def _slope(sizes: list[int], values: list[float]) -> float | None:
    """Least-squares slope of log(value) on log(size): 1.0 grows linearly."""
    points = [(math.log(s), math.log(v)) for s, v in zip(sizes, values, strict=True) if v > 0]
    if len(points) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return round(sum((x - mx) * (y - my) for x, y in points) / den, 3) if den else None


def cost(params: Params) -> dict[str, Any]:
    rows = []
    for size in params.cost_sizes:
        doc = W.mixed_doc(size)
        times = []
        snap = None
        for _ in range(params.compile_repeats):
            snap = None
            gc.collect()
            t0 = time.perf_counter()
            snap = Snapshot.build(doc)
            times.append(time.perf_counter() - t0)
        assert snap is not None and len(snap.keys) == size
        key = snap.keys[len(snap.keys) // 2]
        kill = {key: Override(OverrideKind.KILL)}
        m = measure(
            lambda s=snap, k=kill: s.with_overrides(k, 1),  # type: ignore[misc]
            max(3, params.engine_passes),
            int(params.engine_target_ms * 1e6),
        )
        rows.append(
            {
                "flags": size,
                "compile_ms": round(statistics.median(times) * 1e3, 3),
                "compile_runs_ms": [round(t * 1e3, 3) for t in times],
                "compile_us_per_flag": round(statistics.median(times) * 1e6 / size, 2),
                "kill_us": round(m["median_ns_per_call"] / 1e3, 3),
                "kill_best_us": round(m["best_ns_per_call"] / 1e3, 3),
            }
        )
        del snap, doc
    sizes = [r["flags"] for r in rows]
    return {
        "rows": rows,
        "compile_growth_exponent": _slope(sizes, [r["compile_ms"] for r in rows]),
        "kill_growth_exponent": _slope(sizes, [r["kill_us"] for r in rows]),
        "note": "compile: Snapshot.build (validate + compile), median of the runs; kill: "
        "Snapshot.with_overrides with one kill switch, median pass. Growth exponent: slope of "
        "log(cost) on log(flags), 1.0 = linear.",
    }


# -- memory per edge process ----------------------------------------------------------------


def _status_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon"):
            out[name] = int(rest.split()[0])
    return out


def memory(params: Params) -> dict[str, Any]:
    from benchmarks.load import Server
    from flagedge.bench.load import Workload, probe

    rows = []
    for size in params.memory_sizes:
        doc = W.mixed_doc(size)
        with Server("flagedge", 1, doc=doc) as server:
            # One answered call first, so the process has done what serving does.
            probe(server.target, "evaluate", Workload(flag=doc_key(doc)))
            time.sleep(0.3)
            kib = _status_kib(server.process.pid)
        rows.append(
            {
                "flags": size,
                "rss_mib": round(kib["VmRSS"] / 1024, 2),
                "peak_rss_mib": round(kib["VmHWM"] / 1024, 2),
                "anon_mib": round(kib.get("RssAnon", 0) / 1024, 2),
            }
        )
    per_flag = None
    if len(rows) >= 2 and rows[-1]["flags"] > rows[0]["flags"]:
        per_flag = round(
            (rows[-1]["rss_mib"] - rows[0]["rss_mib"])
            * 1024
            / (rows[-1]["flags"] - rows[0]["flags"]),
            3,
        )
    return {
        "rows": rows,
        "kib_per_flag": per_flag,
        "note": "one `flagedge serve --workers 1` per size, after one answered Evaluate: "
        "VmRSS, VmHWM and RssAnon from /proc/PID/status",
    }


def doc_key(doc: dict[str, Any]) -> str:
    return next(iter(doc["flags"]))


# -- gRPC -----------------------------------------------------------------------------------


def grpc(params: Params) -> dict[str, Any]:
    from benchmarks.load import Server
    from flagedge.bench.load import Load, Workload, run_matrix

    load = Load(duration=params.grpc_duration)
    raw: list[dict[str, Any]] = []

    def keep(row: dict[str, Any]) -> None:
        raw.append({k: v for k, v in row.items() if k != "cdf"})
        print(
            f"    {row['server']:8} {row['scenario']:15} {row['rpc_per_s']:>7,} rpc/s", flush=True
        )

    workers, loop = params.grpc_server_workers, params.grpc_server_loop
    with Server("echo", workers, loop=loop) as echo, Server("flagedge", workers, loop=loop) as fe:
        rows = run_matrix(
            [echo.as_target(), fe.as_target()],
            params.grpc_scenarios,
            load,
            Workload(),
            repeat=params.grpc_repeat,
            on_row=keep,
        )
    return {
        "server_workers": workers,
        "server_loop": loop,
        "load": {
            "duration_s": load.duration,
            "procs": load.procs,
            "channels": load.channels,
            "concurrency": load.concurrency,
            "client_loop": load.client_loop(),
            "repeat": params.grpc_repeat,
        },
        "rows": rows,
        "runs": raw,
    }


# -- propagation ------------------------------------------------------------------------------


def propagation(params: Params) -> dict[str, Any]:
    from benchmarks import propagation as P

    rows = P.run(params.propagation_edges, params.propagation_flips, params.propagation_load_rate)
    for row in rows:
        row["run"] = "idle" if row["load_rate_target"] == 0 else "loaded"
    return {"rows": rows}


# -- scaling ----------------------------------------------------------------------------------


def scaling(params: Params) -> dict[str, Any]:
    from benchmarks import scaling as S

    rows = []
    for n in params.scaling_workers:
        rows.extend(
            S.run_one(n, list(params.scaling_scenarios), params.scaling_duration, 1, None, None)
        )
    recorded = None
    if RECORDED_SCALING.exists():
        data = json.loads(RECORDED_SCALING.read_text())
        recorded = {
            "source": str(RECORDED_SCALING.relative_to(RESULTS.parents[1])),
            "date": RECORDED_SCALING_DATE,
            "caveat": RECORDED_SCALING_CAVEAT,
            "machine": data.get("machine"),
            "rows": [
                {
                    k: r.get(k)
                    for k in ("workers", "scenario", "rpc_per_s", "evals_per_s", "p50_ms", "p99_ms")
                }
                for r in data.get("rows", [])
            ],
        }
    return {
        "cores": os.cpu_count(),
        "pinned": False,
        "note": "server and load generator share this machine's cores, unpinned",
        "rows": [{k: v for k, v in r.items() if k != "cdf"} for r in rows],
        "recorded_16core": recorded,
    }


# -- peers ------------------------------------------------------------------------------------


def peers(params: Params) -> dict[str, Any]:
    makes, versions, skipped = load_evaluators(list(params.peers_only) or None)
    if params.peers_only and "flagedge" not in makes:
        all_makes, all_versions, _ = load_evaluators(["flagedge"])
        makes.update(all_makes)
        versions.update(all_versions)
    target_ns = int(params.peers_target_ms * 1e6)
    empty = measure(lambda: None, params.peers_passes, target_ns)
    results: dict[str, dict[str, Any]] = {}
    for name, make in makes.items():
        results[name] = {}
        for workload in W.WORKLOADS:
            try:
                fn = make(workload)
            except Exception as exc:  # a peer that cannot do a workload is reported
                results[name][workload] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            m = measure(fn, params.peers_passes, target_ns)
            per = W.EVALS_PER_CALL[workload]
            results[name][workload] = {
                "ns_per_eval": round(m["best_ns_per_call"] / per, 2),
                "median_ns_per_eval": round(m["median_ns_per_call"] / per, 2),
            }
    ours = results.get("flagedge", {})
    speedup: dict[str, dict[str, float]] = {}
    for name, per_workload in results.items():
        if name == "flagedge":
            continue
        for workload, cell in per_workload.items():
            mine = ours.get(workload, {}).get("ns_per_eval")
            if mine and "ns_per_eval" in cell:
                speedup.setdefault(name, {})[workload] = round(cell["ns_per_eval"] / mine, 2)
    return {
        "unit": "ns per flag evaluation, best pass",
        "harness_ns_per_call": round(empty["best_ns_per_call"], 2),
        "versions": versions,
        "skipped": skipped,
        "missing": _missing_peers(makes, skipped, results),
        "results": results,
        "speedup": speedup,
    }


def _missing_peers(
    makes: dict[str, Any], skipped: list[str], results: dict[str, dict[str, Any]]
) -> dict[str, str]:
    """The suite's peers without a figure on every workload, and why: a report that lacks
    any of them must not name a fastest peer."""
    missing = {}
    for name in BUILTIN_PEERS:
        if name not in makes:
            why = [m.split(": ", 1)[1] for m in skipped if m.startswith(f"{name}: ")]
            missing[name] = why[0] if why else "not selected"
            continue
        failed = [w for w in W.WORKLOADS if "ns_per_eval" not in results[name].get(w, {})]
        if failed:
            missing[name] = "failed on " + ", ".join(failed)
    return missing


SECTIONS: dict[str, Callable[[Params], dict[str, Any]]] = {
    "engine": engine,
    "cost": cost,
    "memory": memory,
    "grpc": grpc,
    "propagation": propagation,
    "scaling": scaling,
    "peers": peers,
}
