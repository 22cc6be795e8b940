"""``python -m benchmarks.suite``: run the suite, write report.json, report.md and plots."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import compare
from benchmarks.suite import figures, machine, plots, report, sections

SCHEMA = 1


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(params: sections.Params, wanted: list[str], out: Path) -> dict[str, Any]:
    """Run the sections; write report.json, report.md and the plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": params.mode,
        "started": _now(),
        "loadavg": {"start": machine.loadavg()},
        "machine": machine.machine(),
        "git": machine.git(),
        "params": dataclasses.asdict(params),
        "sections": {},
        "timings_s": {},
        "errors": {},
        "skipped": [],
    }
    t_start = time.monotonic()
    for name in wanted:
        print(f"==> {name}", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            doc["sections"][name] = sections.SECTIONS[name](params)
        except Exception as exc:  # one broken section must not lose the others' figures
            traceback.print_exc()
            doc["errors"][name] = f"{type(exc).__name__}: {exc}"
        doc["timings_s"][name] = round(time.monotonic() - t0, 1)
        print(f"    {doc['timings_s'][name]} s", file=sys.stderr, flush=True)
    doc["skipped"] = [
        f"{name} (not selected)" for name in sections.SECTIONS if name not in wanted
    ] + [f"{name} (failed: {err})" for name, err in doc["errors"].items()]
    doc["ended"] = _now()
    doc["duration_s"] = round(time.monotonic() - t_start, 1)
    doc["loadavg"]["end"] = machine.loadavg()
    doc["figures"] = figures.figures(doc["sections"])
    why_not = plots.available()
    doc["plots"] = []
    if why_not is None:
        try:
            doc["plots"] = plots.draw(doc, out)
        except Exception as exc:  # a plot is never worth the report
            traceback.print_exc()
            doc["plots_skipped"] = f"drawing failed: {type(exc).__name__}: {exc}"
    else:
        doc["plots_skipped"] = why_not
    (out / "report.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "report.md").write_text(report.markdown(doc))
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=(__doc__ or "").splitlines()[0]
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        dest="mode",
        action="store_const",
        const="quick",
        help="about a minute: fewer sizes, methods and passes",
    )
    mode.add_argument(
        "--full",
        dest="mode",
        action="store_const",
        const="full",
        help="the whole suite (default; under 15 minutes on 2 cores)",
    )
    mode.add_argument(
        "--tiny", dest="mode", action="store_const", const="tiny", help=argparse.SUPPRESS
    )  # the tests' mode
    parser.add_argument("--out", type=Path, help="directory (default reports/<UTC time>/)")
    parser.add_argument(
        "--sections",
        default=",".join(sections.SECTIONS),
        help="comma-separated subset of: " + ", ".join(sections.SECTIONS),
    )
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="BASELINE.json",
        help="then compare with this report; exit 1 on a regression",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="REPORT.json",
        help="with --compare: compare this report instead of running",
    )
    parser.add_argument("--threshold", type=float, default=compare.DEFAULT_THRESHOLD)
    parser.add_argument("--gate", choices=("default", "all"), default="default")
    args = parser.parse_args(argv)

    if args.report:
        if not args.compare:
            parser.error("--report needs --compare")
        return compare.main(
            [
                str(args.report),
                str(args.compare),
                f"--threshold={args.threshold}",
                f"--gate={args.gate}",
            ]
        )
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in sections.SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; known: {', '.join(sections.SECTIONS)}")
    params = sections.Params.for_mode(args.mode or "full")
    out = args.out or machine.ROOT / "reports" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    doc = run(params, wanted, out)
    print((out / "report.md").read_text())
    print(f"report: {out / 'report.md'} and report.json ({doc['duration_s']:.0f} s)")
    status = 1 if doc["errors"] else 0
    if args.compare:
        status = max(
            status,
            compare.main(
                [
                    str(out / "report.json"),
                    str(args.compare),
                    f"--threshold={args.threshold}",
                    f"--gate={args.gate}",
                ]
            ),
        )
    return status


if __name__ == "__main__":
    raise SystemExit(main())
