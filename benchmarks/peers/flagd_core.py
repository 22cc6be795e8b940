"""openfeature-flagd-core: the reference Python flagd evaluator (JSON Logic)."""

from __future__ import annotations

from collections.abc import Callable
from itertools import cycle
from typing import Any

from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext

from flagedge.bench import workloads as W
from flagedge.bench.workloads import EVALS_PER_CALL  # noqa: F401  (re-exported)

NAME = "flagd-core"
DIST = "openfeature-flagd-core"


def _of_context(ctx: dict[str, Any]) -> EvaluationContext:
    attrs = {k: v for k, v in ctx.items() if k != "targetingKey"}
    return EvaluationContext(targeting_key=ctx.get("targetingKey"), attributes=attrs)


def _resolver(core: FlagdCore, spec: W.FlagSpec) -> Callable[[EvaluationContext], Any]:
    key = spec.key
    default = W.default_for(spec)
    resolve = (
        core.resolve_string_value if W.flag_type(spec) == "string" else core.resolve_boolean_value
    )
    return lambda ctx: resolve(key, default, ctx).value


def make(workload: str) -> Callable[[], None]:
    specs = W.specs_for(workload)
    core = FlagdCore()
    core.set_flags(W.doc_for(workload))
    plain = W.contexts_for(workload)
    ctxs = [_of_context(c) for c in plain]

    # --- correctness -----------------------------------------------------
    if workload == "rollout":
        one = _resolver(core, specs[0])
        W.check_rollout_share([one(c) for c in ctxs])
    else:
        values = {s.key: _resolver(core, s)(ctxs[0]) for s in specs}
        W.check_results(workload, values, plain[0])
        if workload == "targeted":
            off = _resolver(core, specs[0])(_of_context(W.targeted_context_nonmatching()))
            assert off == "off", off

    # --- timed callable ----------------------------------------------------
    if workload == "all200":
        calls = [
            (
                core.resolve_string_value
                if W.flag_type(s) == "string"
                else core.resolve_boolean_value,
                s.key,
                W.default_for(s),
            )
            for s in specs
        ]
        ctx = ctxs[0]

        def run_all() -> None:
            for resolve, key, default in calls:
                resolve(key, default, ctx)

        return run_all

    spec = specs[0]
    resolve = (
        core.resolve_string_value if W.flag_type(spec) == "string" else core.resolve_boolean_value
    )
    key, default = spec.key, W.default_for(spec)
    if workload == "rollout":
        next_ctx = cycle(ctxs).__next__

        def run_rollout() -> None:
            resolve(key, default, next_ctx())

        return run_rollout

    ctx = ctxs[0]

    def run_one() -> None:
        resolve(key, default, ctx)

    return run_one
