"""Compare two suite reports figure by figure, as ratios; exit 1 when one got worse.

    python -m benchmarks.compare NEW.json BASELINE.json [--threshold 0.25] [--gate all]
    scripts/bench --quick --compare benchmarks/baseline.json     # run, then compare

For each figure present in both reports: ``ratio`` is new / baseline, and ``change`` says how
much better (+) or worse (-) it is in the figure's own direction: for a higher-is-better
figure (throughput, speed-ups, flagedge/echo) new/base - 1, for a lower-is-better one
(times, latencies, memory) base/new - 1. A gated figure regresses when it is worse by more
than the threshold: new < base x (1 - t) for higher-is-better, new > base x (1 + t) for
lower-is-better.

Which figures gate (benchmarks/suite/figures.py): by default the same-run normalised ones
(flagedge over the echo server per gRPC method, flagedge's speed-up over each peer) and the
in-process ones (engine evaluations/s, compile and kill-switch times, RSS). The absolute gRPC
rates and latencies, propagation and scaling figures are printed but do not fail the check on
this noisy, shared machine unless --gate all. Exit codes: 0 no regression, 1 regression,
2 unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.suite.figures import GATED_CLASSES

DEFAULT_THRESHOLD = 0.25


def compare(
    new: dict[str, Any], base: dict[str, Any], threshold: float, gate: str = "default"
) -> tuple[list[dict[str, Any]], list[str]]:
    """(one row per common figure, notes). A row: id, base, new, ratio, change, gated, worse."""
    notes = []
    if new.get("mode") != base.get("mode"):
        notes.append(
            f"modes differ: new {new.get('mode')}, baseline {base.get('mode')} "
            "(shorter runs and fewer passes: compare with care)"
        )
    nm, bm = new.get("machine", {}), base.get("machine", {})
    if (nm.get("cpu_model"), nm.get("cores")) != (bm.get("cpu_model"), bm.get("cores")):
        notes.append(
            f"machines differ: new {nm.get('cpu_model')} x{nm.get('cores')}, baseline "
            f"{bm.get('cpu_model')} x{bm.get('cores')}"
        )
    nf, bf = new.get("figures", {}), base.get("figures", {})
    only_new, only_base = sorted(set(nf) - set(bf)), sorted(set(bf) - set(nf))
    if only_new:
        notes.append(f"{len(only_new)} figure(s) only in the new report (not compared)")
    if only_base:
        notes.append(f"{len(only_base)} figure(s) of the baseline missing from the new report")
    rows = []
    for key in sorted(set(nf) & set(bf)):
        n, b = nf[key], bf[key]
        nv, bv = float(n["value"]), float(b["value"])
        if bv <= 0 or nv <= 0:
            continue
        higher = b["better"] == "higher"
        change = nv / bv - 1 if higher else bv / nv - 1
        worse = nv < bv * (1 - threshold) if higher else nv > bv * (1 + threshold)
        gated = gate == "all" or b.get("class") in GATED_CLASSES
        rows.append(
            {
                "id": key,
                "unit": b["unit"],
                "better": b["better"],
                "class": b.get("class"),
                "base": bv,
                "new": nv,
                "ratio": nv / bv,
                "change": change,
                "gated": gated,
                "worse": worse,
                "regression": worse and gated,
            }
        )
    return rows, notes


def _v(x: float) -> str:
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("new", type=Path)
    parser.add_argument("baseline", type=Path)
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"fail when a gated figure is worse by more than this (default {DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--gate",
        choices=("default", "all"),
        default="default",
        help="default: normalised and in-process figures fail the check; all: every figure",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    try:
        new = json.loads(args.new.read_text())
        base = json.loads(args.baseline.read_text())
    except (OSError, ValueError) as exc:
        print(f"benchmarks.compare: {exc}", file=sys.stderr)
        return 2
    rows, notes = compare(new, base, args.threshold, args.gate)
    regressions = [r for r in rows if r["regression"]]
    if args.json:
        print(json.dumps({"rows": rows, "notes": notes, "regressions": len(regressions)}))
    else:
        print(f"new      {args.new} ({new.get('mode')}, {new.get('started')})")
        print(f"baseline {args.baseline} ({base.get('mode')}, {base.get('started')})")
        for note in notes:
            print(f"note: {note}")
        width = max((len(r["id"]) for r in rows), default=10)
        print(f"\n{'figure':<{width}} {'baseline':>11} {'new':>11} {'new/base':>9} {'change':>8}")
        for r in rows:
            flag = ""
            if r["regression"]:
                flag = "  REGRESSION"
            elif r["worse"]:
                flag = "  worse (not gated)"
            print(
                f"{r['id']:<{width}} {_v(r['base']):>11} {_v(r['new']):>11} "
                f"{r['ratio']:>9.3f} {r['change']:>+8.1%}{flag}"
            )
        gated = sum(r["gated"] for r in rows)
        print(
            f"\n{len(rows)} figures compared, {gated} gated, threshold {args.threshold:.0%}: "
            + (f"{len(regressions)} regression(s)" if regressions else "no regression")
        )
    return 1 if regressions else 0


if __name__ == "__main__":
    raise SystemExit(main())
