"""Unleash's Rust evaluation engine via its Python binding (``yggdrasil-engine``).

``UnleashEngine.take_state`` is fed a client-features document we build, so
nothing is fetched.  Evaluation uses ``is_enabled`` / ``get_variant`` -- the
calls the Unleash Python SDK makes per lookup (they also bump the engine's
in-process usage counters; nothing is sent).  Flag translation:

* static:   enabled toggle with a ``default`` strategy (or disabled toggle);
* targeted: ``flexibleRollout`` 100% with constraints ``email STR_ENDS_WITH
  "@example.com"``, ``plan IN [premium, enterprise]``, ``country IN ["NL"]``
  and strategy variant "on", followed by a ``default`` strategy with variant
  "off"; read with ``get_variant``;
* rollout:  ``flexibleRollout`` 25% with ``stickiness: userId``;
* semver:   ``default`` strategy constrained by ``appVersion SEMVER_GTE 2.0.0``.

Contexts are Unleash context dicts (``userId`` + ``properties``), built once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import cycle
from typing import Any

from yggdrasil_engine.engine import UnleashEngine  # type: ignore[import-untyped]

from flagedge.bench import workloads as W
from flagedge.bench.workloads import EVALS_PER_CALL  # noqa: F401  (re-exported)

NAME = "unleash-yggdrasil"
DIST = "yggdrasil-engine"


def _constraint(
    name: str, op: str, values: list[str] | None = None, value: str | None = None
) -> dict[str, Any]:
    c: dict[str, Any] = {
        "contextName": name,
        "operator": op,
        "caseInsensitive": False,
        "inverted": False,
    }
    if values is not None:
        c["values"] = values
    if value is not None:
        c["value"] = value
    return c


def _variant(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "weight": 1000,
        "weightType": "variable",
        "stickiness": "default",
        "payload": {"type": "string", "value": name},
    }


def _toggle(spec: W.FlagSpec) -> dict[str, Any]:
    toggle: dict[str, Any] = {
        "name": spec.key,
        "type": "release",
        "enabled": True,
        "project": "default",
        "impressionData": False,
        "variants": [],
    }
    if spec.kind == "static":
        toggle["enabled"] = spec.value
        toggle["strategies"] = [{"name": "default", "parameters": {}, "constraints": []}]
    elif spec.kind == "targeted":
        toggle["strategies"] = [
            {
                "name": "flexibleRollout",
                "parameters": {"rollout": "100", "stickiness": "default", "groupId": spec.key},
                "constraints": [
                    _constraint("email", "STR_ENDS_WITH", values=[spec.email_suffix]),
                    _constraint("plan", "IN", values=list(spec.plans)),
                    _constraint("country", "IN", values=[spec.country]),
                ],
                "variants": [_variant("on")],
            },
            {"name": "default", "parameters": {}, "constraints": [], "variants": [_variant("off")]},
        ]
    elif spec.kind == "rollout":
        toggle["strategies"] = [
            {
                "name": "flexibleRollout",
                "parameters": {
                    "rollout": str(spec.percent),
                    "stickiness": "userId",
                    "groupId": spec.key,
                },
                "constraints": [],
            }
        ]
    elif spec.kind == "semver":
        toggle["strategies"] = [
            {
                "name": "default",
                "parameters": {},
                "constraints": [_constraint("appVersion", "SEMVER_GTE", value=spec.min_version)],
            }
        ]
    else:
        raise ValueError(spec.kind)
    return toggle


def _context(ctx: dict[str, Any]) -> dict[str, Any]:
    props = {k: str(v) for k, v in ctx.items() if k != "targetingKey"}
    return {"userId": ctx["targetingKey"], "properties": props}


def _engine(specs: list[W.FlagSpec]) -> UnleashEngine:
    engine = UnleashEngine()
    warnings = engine.take_state(
        json.dumps({"version": 2, "features": [_toggle(s) for s in specs]})
    )
    assert not warnings, f"Unleash engine rejected state: {warnings}"
    return engine


def _reader(engine: UnleashEngine, spec: W.FlagSpec) -> Callable[[dict[str, Any]], Any]:
    key = spec.key
    if spec.kind == "targeted":
        get_variant = engine.get_variant

        def read_variant(ctx: dict[str, Any]) -> Any:
            v = get_variant(key, ctx).variant
            return v.name if v.feature_enabled else "off"

        return read_variant
    is_enabled = engine.is_enabled
    return lambda ctx: is_enabled(key, ctx).is_enabled


def make(workload: str) -> Callable[[], None]:
    specs = W.specs_for(workload)
    engine = _engine(specs)
    plain = W.contexts_for(workload)
    ctxs = [_context(c) for c in plain]
    readers = [_reader(engine, s) for s in specs]

    if workload == "rollout":
        W.check_rollout_share([readers[0](c) for c in ctxs])
    else:
        W.check_results(
            workload, {s.key: r(ctxs[0]) for s, r in zip(specs, readers, strict=True)}, plain[0]
        )
        if workload == "targeted":
            neg = readers[0](_context(W.targeted_context_nonmatching()))
            assert neg == "off", neg

    if workload == "all200":
        ctx = ctxs[0]

        def run_all() -> None:
            for read in readers:
                read(ctx)

        return run_all

    read = readers[0]
    if workload == "rollout":
        next_ctx = cycle(ctxs).__next__

        def run_rollout() -> None:
            read(next_ctx())

        return run_rollout

    ctx = ctxs[0]

    def run_one() -> None:
        read(ctx)

    return run_one
