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
import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from flagedge.bench.figures import QUANTILES, line
from flagedge.bench.runs import Load, run_matrix, run_scenario
from flagedge.bench.scenarios import GROUPS, SCENARIOS, Workload, bench_doc, parse_scenarios
from flagedge.bench.target import LoadError, Secure, Target, probe

# The command's machinery lives beside it (scenarios, target, worker, runs, figures); these
# names stay importable from here, where benchmarks/ and tests/ have always found them.
__all__ = [
    "QUANTILES",
    "SCENARIOS",
    "Load",
    "LoadError",
    "Secure",
    "Target",
    "Workload",
    "add_arguments",
    "bench_doc",
    "load_from_args",
    "main",
    "probe",
    "run_cli",
    "run_matrix",
    "run_scenario",
    "secure_from_args",
    "workload_from_args",
]


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
