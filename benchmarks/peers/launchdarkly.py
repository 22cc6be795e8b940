"""LaunchDarkly server-side Python SDK (``launchdarkly-server-sdk``), offline.

The client is built with a tiny in-process data source (an
``UpdateProcessor`` passed as ``update_processor_class``) that loads flag JSON
we construct into the client's in-memory store and reports itself
initialized.  ``send_events=False`` selects the null event processor and
``diagnostic_opt_out=True`` disables diagnostics, so nothing is sent anywhere
and no streaming/polling connection is opened.  (``offline=True`` cannot be
used: in offline mode ``variation`` always returns the default.)

Evaluation goes through the public ``LDClient.variation`` (hooks, store
lookup, evaluator, null event), once per flag.  Flag translation, in
LaunchDarkly's flag data model:

* static:   on, fallthrough -> variation ``True``;
* targeted: rule clauses ``email endsWith "@example.com"``, ``plan in
  [premium, enterprise]``, ``country in ["NL"]`` -> "on", fallthrough "off";
* rollout:  fallthrough percentage rollout 25000/75000 (of 100000) bucketed by
  the context key;
* semver:   rule ``appVersion semVerLessThan "2.0.0"`` negated (LaunchDarkly
  has no ``>=`` semver operator) -> True, fallthrough False.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import cycle
from typing import Any

from ldclient.client import LDClient
from ldclient.config import Config
from ldclient.context import Context
from ldclient.interfaces import UpdateProcessor
from ldclient.versioned_data_kind import FEATURES, SEGMENTS

from flagedge.bench import workloads as W
from flagedge.bench.workloads import EVALS_PER_CALL  # noqa: F401  (re-exported)

NAME = "launchdarkly"
DIST = "launchdarkly-server-sdk"


class _StaticFlags(UpdateProcessor):
    """Data source that hands a fixed set of flags to the store, offline."""

    def __init__(
        self, flags: dict[str, dict[str, Any]], config: Any, store: Any, ready: Any
    ) -> None:
        self._flags = flags
        self._store = store
        self._ready = ready

    def start(self) -> None:
        self._store.init({FEATURES: dict(self._flags), SEGMENTS: {}})
        self._ready.set()

    def stop(self) -> None:
        pass

    def initialized(self) -> bool:
        return True


def _clause(attr: str, op: str, values: list[Any], negate: bool = False) -> dict[str, Any]:
    return {"contextKind": "user", "attribute": attr, "op": op, "values": values, "negate": negate}


def _flag(spec: W.FlagSpec) -> dict[str, Any]:
    flag: dict[str, Any] = {
        "key": spec.key,
        "version": 1,
        "on": True,
        "prerequisites": [],
        "targets": [],
        "contextTargets": [],
        "rules": [],
        "salt": spec.key,
        "offVariation": 1,
        "trackEvents": False,
        "trackEventsFallthrough": False,
        "deleted": False,
    }
    if spec.kind == "static":
        flag["variations"] = [spec.value, not spec.value]
        flag["fallthrough"] = {"variation": 0}
    elif spec.kind == "targeted":
        flag["variations"] = ["on", "off"]
        flag["rules"] = [
            {
                "id": "rule0",
                "variation": 0,
                "clauses": [
                    _clause("email", "endsWith", [spec.email_suffix]),
                    _clause("plan", "in", list(spec.plans)),
                    _clause("country", "in", [spec.country]),
                ],
            }
        ]
        flag["fallthrough"] = {"variation": 1}
    elif spec.kind == "rollout":
        flag["variations"] = [True, False]
        on = spec.percent * 1000
        flag["fallthrough"] = {
            "rollout": {
                "variations": [
                    {"variation": 0, "weight": on},
                    {"variation": 1, "weight": 100_000 - on},
                ]
            }
        }
    elif spec.kind == "semver":
        flag["variations"] = [True, False]
        flag["rules"] = [
            {
                "id": "rule0",
                "variation": 0,
                "clauses": [
                    _clause("appVersion", "semVerLessThan", [spec.min_version], negate=True)
                ],
            }
        ]
        flag["fallthrough"] = {"variation": 1}
    else:
        raise ValueError(spec.kind)
    return flag


def _context(ctx: dict[str, Any]) -> Context:
    b = Context.builder(ctx["targetingKey"])
    for k, v in ctx.items():
        if k != "targetingKey":
            b.set(k, v)
    return b.build()


def _client(specs: list[W.FlagSpec]) -> LDClient:
    flags = {s.key: _flag(s) for s in specs}
    config = Config(
        sdk_key="bench-offline-not-a-key",
        update_processor_class=lambda cfg, store, ready: _StaticFlags(flags, cfg, store, ready),
        send_events=False,
        diagnostic_opt_out=True,
    )
    client = LDClient(config=config, start_wait=0)
    assert client.is_initialized(), "LaunchDarkly client did not initialize from local data"
    return client


def make(workload: str) -> Callable[[], None]:
    specs = W.specs_for(workload)
    client = _client(specs)
    variation = client.variation
    plain = W.contexts_for(workload)
    ctxs = [_context(c) for c in plain]

    if workload == "rollout":
        W.check_rollout_share([variation(specs[0].key, c, None) for c in ctxs])
    else:
        W.check_results(
            workload, {s.key: variation(s.key, ctxs[0], W.default_for(s)) for s in specs}, plain[0]
        )
        if workload == "targeted":
            neg = variation(specs[0].key, _context(W.targeted_context_nonmatching()), "default")
            assert neg == "off", neg

    if workload == "all200":
        calls = [(s.key, W.default_for(s)) for s in specs]
        ctx = ctxs[0]

        def run_all() -> None:
            for key, default in calls:
                variation(key, ctx, default)

        return run_all

    key, default = specs[0].key, W.default_for(specs[0])
    if workload == "rollout":
        next_ctx = cycle(ctxs).__next__

        def run_rollout() -> None:
            variation(key, next_ctx(), default)

        return run_rollout

    ctx = ctxs[0]

    def run_one() -> None:
        variation(key, ctx, default)

    return run_one
