"""``flagedge bench``: benchmark tools for users' own deployments.

    flagedge bench load --target HOST:PORT [--scenario NAMES] [--duration S] [--json] ...

Exit codes: 0 done (the rows count any failed calls); 2 bad usage, or a target that cannot run
a scenario (unreachable, a method it lacks, an error answer to the checking call).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flagedge.bench import load


def _load(args: argparse.Namespace) -> int:
    try:
        return load.main(args)
    except (load.LoadError, ValueError) as exc:
        print(f"flagedge bench load: {exc}", file=sys.stderr)
        return 2


def add_command(sub: Any) -> None:
    """Add ``bench`` and its subcommands to the CLI's subparsers."""
    bench = sub.add_parser("bench", help="benchmark tools: load a flagedge or flagd server")
    tools = bench.add_subparsers(
        dest="bench_command",
        required=True,
        metavar="TOOL",
        help="the tool; flagedge bench TOOL --help for its options",
    )
    doc = load.__doc__ or ""
    p = tools.add_parser(
        "load",
        help="calls/s, evaluations/s and latency of a flagedge or flagd-compatible server",
        description=doc.split("\n\n", 1)[0],
        epilog=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    load.add_arguments(p)
    p.set_defaults(func=_load)
