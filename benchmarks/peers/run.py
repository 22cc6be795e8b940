"""Peer-comparison benchmark: ns per flag evaluation, per evaluator x workload.

    python -m benchmarks.peers.run [--passes 15] [--json out.json] [--only NAME]

Every evaluator (built-in peers from ``benchmarks.peers.BUILTIN_PEERS`` plus
any contender added with ``register(name, make)``) is asked for a callable per
workload; ``make`` validates the evaluator's answers before timing starts.

Timing: the callable is first calibrated to a loop of K calls taking about
``--target-ms`` (default 75 ms); then ``--passes`` timed passes of that loop
are run with ``time.perf_counter_ns`` and the garbage collector paused (as
``timeit`` does).  The reported figure is the best pass divided by
K x evaluations-per-call; the median pass is kept in the JSON output.  An
empty function timed the same way is printed as a reference line: it is the
harness's own per-call overhead, included in every figure.

flagedge is added by ``benchmarks/peers/flagedge_adapter.py`` when present:
that module may call ``register("flagedge", make)`` itself, or simply define
``make(workload)`` (and optionally ``NAME``), in which case it is registered
under ``NAME`` (default "flagedge").
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from itertools import repeat
from typing import Any

from benchmarks import peers as _peers
from benchmarks.peers import BUILTIN_PEERS, CONTENDERS, MakeFn
from benchmarks.peers import register as _register
from flagedge.bench.workloads import EVALS_PER_CALL, WORKLOAD_TITLES, WORKLOADS

ADAPTER_MODULE = "benchmarks.peers.flagedge_adapter"


def register(name: str, make: MakeFn) -> None:
    """Register an extra contender; ``make(workload)`` returns a pass callable."""
    _register(name, make)


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------


def _loop_ns(fn: Callable[[], None], k: int) -> int:
    t0 = time.perf_counter_ns()
    for _ in repeat(None, k):
        fn()
    return time.perf_counter_ns() - t0


def calibrate(fn: Callable[[], None], target_ns: int) -> int:
    """Number of calls K such that one loop of K calls takes ~``target_ns``."""
    k = 1
    while True:
        elapsed = _loop_ns(fn, k)
        if elapsed >= target_ns // 4 or k >= 1 << 30:
            break
        k *= 4 if elapsed < target_ns // 40 else 2
    return max(1, round(k * target_ns / max(elapsed, 1)))


def measure(fn: Callable[[], None], passes: int, target_ns: int) -> dict[str, Any]:
    """Best-of-``passes`` timing of a K-call loop; returns ns per call."""
    k = calibrate(fn, target_ns)
    _loop_ns(fn, max(1, k // 10))  # warm-up
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        samples = [_loop_ns(fn, k) for _ in range(passes)]
    finally:
        if was_enabled:
            gc.enable()
    return {
        "calls_per_pass": k,
        "best_ns_per_call": min(samples) / k,
        "median_ns_per_call": statistics.median(samples) / k,
        "pass_ms": [round(s / 1e6, 3) for s in samples],
    }


def _empty() -> None:
    pass


# --------------------------------------------------------------------------
# Evaluator discovery
# --------------------------------------------------------------------------


def _dist_version(dist: str | None) -> str | None:
    if not dist:
        return None
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def load_evaluators(
    only: list[str] | None,
) -> tuple[dict[str, MakeFn], dict[str, str | None], list[str]]:
    """Return (name -> make, name -> version, skip messages)."""
    wanted = {n.lower() for n in only} if only else None
    makes: dict[str, MakeFn] = {}
    versions: dict[str, str | None] = {}
    skipped: list[str] = []

    def selected(name: str, module: str = "") -> bool:
        return wanted is None or name.lower() in wanted or module.lower() in wanted

    for name, module in BUILTIN_PEERS.items():
        if not selected(name, module):
            continue
        try:
            mod = importlib.import_module(f"{_peers.__name__}.{module}")
        except ImportError as exc:
            skipped.append(f"{name}: skipped, import failed ({exc})")
            continue
        makes[name] = mod.make
        versions[name] = _dist_version(getattr(mod, "DIST", None))

    # flagedge's adapter, if someone has written it.
    try:
        adapter = importlib.import_module(ADAPTER_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != ADAPTER_MODULE:
            skipped.append(f"flagedge adapter: skipped, import failed ({exc})")
    except ImportError as exc:
        skipped.append(f"flagedge adapter: skipped, import failed ({exc})")
    else:
        name = getattr(adapter, "NAME", "flagedge")
        if name not in CONTENDERS and callable(getattr(adapter, "make", None)):
            register(name, adapter.make)
        versions.setdefault(name, _dist_version(getattr(adapter, "DIST", "flagedge")))

    for name, make in CONTENDERS.items():
        if selected(name):
            makes[name] = make
            versions.setdefault(name, None)

    if wanted is not None:
        known = {n.lower() for n in (*BUILTIN_PEERS, *BUILTIN_PEERS.values(), *CONTENDERS)}
        for n in sorted(wanted - known):
            skipped.append(
                f"{n}: no such evaluator (known: {', '.join([*BUILTIN_PEERS, *CONTENDERS])})"
            )
    return makes, versions, skipped


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------


def fmt_ns(ns: float | None) -> str:
    if ns is None:
        return "n/a"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    if ns < 10:
        return f"{ns:.1f} ns"
    return f"{ns:.0f} ns"


def markdown_table(
    results: dict[str, dict[str, Any]], workloads: list[str], empty_ns: float
) -> str:
    head = "| evaluator | " + " | ".join(WORKLOAD_TITLES[w] for w in workloads) + " |"
    sep = "|---|" + "---:|" * len(workloads)
    lines = [head, sep]
    for name, per in results.items():
        cells = []
        for w in workloads:
            r = per.get(w)
            if r is None:
                cells.append("n/a")
            elif "error" in r:
                cells.append("error")
            else:
                cells.append(fmt_ns(r["ns_per_eval"]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(
        "| *(empty function call, reference)* | "
        + " | ".join(fmt_ns(empty_ns / EVALS_PER_CALL[w]) for w in workloads)
        + " |"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.peers.run", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "--passes",
        type=int,
        default=15,
        help="timed passes per cell; best is reported (default 15)",
    )
    ap.add_argument(
        "--target-ms",
        type=float,
        default=75.0,
        help="approximate duration of one pass (default 75)",
    )
    ap.add_argument("--json", metavar="PATH", help="also write results as JSON to PATH")
    ap.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="benchmark only this evaluator (repeatable, or comma-separated)",
    )
    ap.add_argument(
        "--workload",
        action="append",
        choices=WORKLOADS,
        help="run only this workload (repeatable; default: all)",
    )
    args = ap.parse_args(argv)

    only = [n.strip() for item in (args.only or []) for n in item.split(",") if n.strip()] or None
    workloads = [w for w in WORKLOADS if not args.workload or w in args.workload]
    target_ns = int(args.target_ms * 1e6)

    makes, versions, skipped = load_evaluators(only)
    for msg in skipped:
        print(msg, file=sys.stderr)

    empty = measure(_empty, args.passes, target_ns)
    empty_ns = empty["best_ns_per_call"]

    results: dict[str, dict[str, Any]] = {}
    for name, make in makes.items():
        results[name] = {}
        for w in workloads:
            try:
                fn = make(w)
            except Exception as exc:  # a peer that cannot do a workload is reported, not fatal
                msg = f"{type(exc).__name__}: {exc}"
                print(f"{name}/{w}: construction or self-check failed: {msg}", file=sys.stderr)
                results[name][w] = {"error": msg}
                continue
            m = measure(fn, args.passes, target_ns)
            per = EVALS_PER_CALL[w]
            m["evals_per_call"] = per
            m["ns_per_eval"] = m["best_ns_per_call"] / per
            m["median_ns_per_eval"] = m["median_ns_per_call"] / per
            results[name][w] = m
            print(
                f"  {name:<20} {WORKLOAD_TITLES[w]:<14} {fmt_ns(m['ns_per_eval']):>10}/eval "
                f"(K={m['calls_per_pass']}, median {fmt_ns(m['median_ns_per_eval'])})",
                file=sys.stderr,
                flush=True,
            )

    print()
    print(
        f"ns per flag evaluation, best of {args.passes} passes of ~{args.target_ms:g} ms "
        f"(Python {platform.python_version()}, {platform.machine()})"
    )
    print(flush=True)
    print(markdown_table(results, workloads, empty_ns))
    print()
    print(
        f"Empty-function loop: {empty_ns:.1f} ns per call (harness overhead, included in "
        f"every cell; shown per evaluation in the last row)."
    )
    vers = ", ".join(f"{n} {v}" for n, v in versions.items() if v)
    if vers:
        print(f"Versions: {vers}")

    if args.json:
        doc = {
            "meta": {
                "python": sys.version,
                "implementation": platform.python_implementation(),
                "machine": platform.machine(),
                "platform": platform.platform(),
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "passes": args.passes,
                "target_ms": args.target_ms,
                "unit": "ns per flag evaluation (best pass)",
            },
            "workloads": {
                w: {"title": WORKLOAD_TITLES[w], "evals_per_call": EVALS_PER_CALL[w]}
                for w in workloads
            },
            "empty_function": empty,
            "versions": versions,
            "skipped": skipped,
            "results": results,
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
