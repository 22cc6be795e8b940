"""GrowthBook Python SDK (``growthbook``), evaluating a local features payload.

No ``client_key``/``api_host`` is given, so the SDK never fetches, refreshes
or streams; features are passed in directly.  Flag translation:

* static:   ``{"defaultValue": True}``
* targeted: force "on" under the condition
  ``{"email": {"$regex": "@example\\.com$"}, "plan": {"$in": [...]}, "country": "NL"}``,
  default "off";
* rollout:  force True with ``coverage: 0.25`` hashed on the ``id`` attribute;
* semver:   force True under ``{"appVersion": {"$vgte": "2.0.0"}}``.

One ``GrowthBook`` instance is reused; for the rollout workload each call
swaps the user's attributes in with ``set_attributes`` (the cheap way to
change user on an existing instance) and then evaluates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import cycle
from typing import Any

from growthbook import GrowthBook

from flagedge.bench import workloads as W
from flagedge.bench.workloads import EVALS_PER_CALL  # noqa: F401  (re-exported)

NAME = "growthbook"
DIST = "growthbook"


def _feature(spec: W.FlagSpec) -> dict[str, Any]:
    if spec.kind == "static":
        return {"defaultValue": spec.value}
    if spec.kind == "targeted":
        cond = {
            "email": {"$regex": re.escape(spec.email_suffix) + "$"},
            "plan": {"$in": list(spec.plans)},
            "country": spec.country,
        }
        return {"defaultValue": "off", "rules": [{"condition": cond, "force": "on"}]}
    if spec.kind == "rollout":
        return {
            "defaultValue": False,
            "rules": [{"force": True, "coverage": spec.percent / 100, "hashAttribute": "id"}],
        }
    if spec.kind == "semver":
        return {
            "defaultValue": False,
            "rules": [{"condition": {"appVersion": {"$vgte": spec.min_version}}, "force": True}],
        }
    raise ValueError(spec.kind)


def _attributes(ctx: dict[str, Any]) -> dict[str, Any]:
    attrs = {k: v for k, v in ctx.items() if k != "targetingKey"}
    attrs["id"] = ctx["targetingKey"]
    return attrs


def make(workload: str) -> Callable[[], None]:
    specs = W.specs_for(workload)
    features = {s.key: _feature(s) for s in specs}
    plain = W.contexts_for(workload)
    attrs = [_attributes(c) for c in plain]
    gb = GrowthBook(attributes=attrs[0], features=features)
    value = gb.get_feature_value

    if workload == "rollout":
        seen = []
        for a in attrs:
            gb.set_attributes(a)
            seen.append(value(specs[0].key, False))
        W.check_rollout_share(seen)
        gb.set_attributes(attrs[0])
    else:
        W.check_results(workload, {s.key: value(s.key, W.default_for(s)) for s in specs}, plain[0])
        if workload == "targeted":
            other = GrowthBook(
                attributes=_attributes(W.targeted_context_nonmatching()), features=features
            )
            assert other.get_feature_value(specs[0].key, "default") == "off"

    if workload == "all200":
        calls = [(s.key, W.default_for(s)) for s in specs]

        def run_all() -> None:
            for key, default in calls:
                value(key, default)

        return run_all

    key, default = specs[0].key, W.default_for(specs[0])
    if workload == "rollout":
        next_attrs = cycle(attrs).__next__
        set_attributes = gb.set_attributes

        def run_rollout() -> None:
            set_attributes(next_attrs())
            value(key, default)

        return run_rollout

    def run_one() -> None:
        value(key, default)

    return run_one
