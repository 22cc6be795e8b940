"""Flagsmith's local-evaluation engine (``flagsmith-flag-engine``).

Flagsmith evaluates a whole environment per identity in one call
(``get_evaluation_result``), so a workload's environment holds exactly that
workload's features: one feature for the single-flag workloads, 200 for
``all200`` (one call = all 200 flags).  Targeting is expressed as segments
with feature overrides:

* targeted: segment ALL[email REGEX ``@example\\.com$``, plan IN [...],
  country EQUAL NL] overriding the value "off" -> "on" (Flagsmith has no
  ends-with operator; an anchored regex is the equivalent);
* rollout: segment with a PERCENTAGE_SPLIT 25 condition on the identity key,
  overriding enabled False -> True (one segment per rollout flag);
* semver: segment with ``appVersion GREATER_THAN_INCLUSIVE "2.0.0:semver"``.

Boolean flags map to the feature's ``enabled`` state, string flags to its
``value``.  The evaluation contexts (environment + identity with traits) are
built once up front, as an SDK would do per request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import cycle
from typing import Any

from flag_engine.engine import get_evaluation_result as _get_evaluation_result

from flagedge.bench import workloads as W
from flagedge.bench.workloads import EVALS_PER_CALL  # noqa: F401  (re-exported)

NAME = "flagsmith-engine"
DIST = "flagsmith-flag-engine"

# The engine types its input/output as TypedDicts; the adapter builds plain dicts.
get_evaluation_result: Callable[[Any], Any] = _get_evaluation_result

ENV = {"key": "bench-env-key", "name": "bench"}


def _feature(spec: W.FlagSpec, n: int) -> dict[str, Any]:
    if spec.kind == "static":
        return {"key": str(n), "name": spec.key, "enabled": spec.value, "value": None}
    if spec.kind == "targeted":
        return {"key": str(n), "name": spec.key, "enabled": True, "value": "off"}
    return {"key": str(n), "name": spec.key, "enabled": False, "value": None}


def _segment(spec: W.FlagSpec, n: int) -> dict[str, Any] | None:
    if spec.kind == "static":
        return None
    if spec.kind == "targeted":
        conditions = [
            {
                "property": "email",
                "operator": "REGEX",
                "value": ".*" + re.escape(spec.email_suffix) + "$",
            },
            {"property": "plan", "operator": "IN", "value": list(spec.plans)},
            {"property": "country", "operator": "EQUAL", "value": spec.country},
        ]
        override = {"key": str(n), "name": spec.key, "enabled": True, "value": "on"}
    elif spec.kind == "rollout":
        conditions = [{"property": "", "operator": "PERCENTAGE_SPLIT", "value": str(spec.percent)}]
        override = {"key": str(n), "name": spec.key, "enabled": True, "value": None}
    elif spec.kind == "semver":
        conditions = [
            {
                "property": "appVersion",
                "operator": "GREATER_THAN_INCLUSIVE",
                "value": spec.min_version + ":semver",
            }
        ]
        override = {"key": str(n), "name": spec.key, "enabled": True, "value": None}
    else:
        raise ValueError(spec.kind)
    seg_key = f"seg-{n}"
    return {
        "key": seg_key,
        "name": f"segment-{spec.key}",
        "rules": [{"type": "ALL", "rules": [{"type": "ALL", "conditions": conditions}]}],
        "overrides": [override],
    }


def _environment(specs: list[W.FlagSpec]) -> dict[str, Any]:
    features: dict[str, Any] = {}
    segments: dict[str, Any] = {}
    for n, spec in enumerate(specs, start=1):
        features[spec.key] = _feature(spec, n)
        seg = _segment(spec, n)
        if seg is not None:
            segments[seg["key"]] = seg
    return {"environment": ENV, "features": features, "segments": segments}


def _context(env: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
    ident = ctx["targetingKey"]
    traits = {k: v for k, v in ctx.items() if k != "targetingKey"}
    return {
        **env,
        "identity": {"identifier": ident, "key": f"{ENV['key']}_{ident}", "traits": traits},
    }


def _values(specs: list[W.FlagSpec], result: dict[str, Any]) -> dict[str, Any]:
    flags = result["flags"]
    out: dict[str, Any] = {}
    for spec in specs:
        f = flags[spec.key]
        out[spec.key] = f["value"] if spec.kind == "targeted" else f["enabled"]
    return out


def make(workload: str) -> Callable[[], None]:
    specs = W.specs_for(workload)
    env = _environment(specs)
    plain = W.contexts_for(workload)
    ctxs = [_context(env, c) for c in plain]

    if workload == "rollout":
        W.check_rollout_share(
            [_values(specs, get_evaluation_result(c))[specs[0].key] for c in ctxs]
        )
    else:
        W.check_results(workload, _values(specs, get_evaluation_result(ctxs[0])), plain[0])
        if workload == "targeted":
            neg = _values(
                specs, get_evaluation_result(_context(env, W.targeted_context_nonmatching()))
            )
            assert neg[specs[0].key] == "off", neg

    evaluate = get_evaluation_result
    if workload == "rollout":
        next_ctx = cycle(ctxs).__next__

        def run_rollout() -> None:
            evaluate(next_ctx())

        return run_rollout

    ctx = ctxs[0]

    def run_one() -> None:  # for all200, one call evaluates all 200 features
        evaluate(ctx)

    return run_one
