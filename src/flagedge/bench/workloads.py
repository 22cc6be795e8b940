"""Shared workload definitions for the benchmarks: the peer comparison, the engine suite and
the load generator (``flagedge bench load``), which is why they live in the package.

Every workload is described once, as plain data (``FlagSpec``), and then
rendered into the flagd flag-definition format (which flagedge and the
reference ``FlagdCore`` both consume).  Peer adapters under
``benchmarks/peers/`` translate the same ``FlagSpec`` records into their own
native formats, so all evaluators are asked exactly the same question.

Workloads (the names used throughout the harness):

``static``    one boolean flag, no targeting, always ``True``.
``targeted``  one string flag: email ends with ``@example.com`` AND plan in
              ["premium", "enterprise"] AND country == "NL" -> "on", else "off".
``rollout``   one boolean flag, on for a consistent 25% of targeting keys
              (flagd ``fractional``); contexts cycle over 1,000 user ids.
``all200``    200 mixed flags (static / targeted / rollout / sem_ver) evaluated
              for one context; reported per flag evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WORKLOADS: tuple[str, ...] = ("static", "targeted", "rollout", "all200")

#: Column titles for the report, in ``WORKLOADS`` order.
WORKLOAD_TITLES: dict[str, str] = {
    "static": "static",
    "targeted": "rule-targeted",
    "rollout": "25% rollout",
    "all200": "all 200 flags",
}

#: How many flag evaluations one call of a workload callable performs.
EVALS_PER_CALL: dict[str, int] = {"static": 1, "targeted": 1, "rollout": 1, "all200": 200}

STATIC_KEY = "static-flag"
TARGETED_KEY = "targeted-flag"
ROLLOUT_KEY = "rollout-flag"

EMAIL_SUFFIX = "@example.com"
PLANS = ("premium", "enterprise")
ROLLOUT_PERCENT = 25


@dataclass(frozen=True)
class FlagSpec:
    """Evaluator-neutral description of one flag.

    kind:
      ``static``    boolean, always ``value``.
      ``targeted``  string "on"/"off": ``email`` ends with ``email_suffix`` and
                    ``plan`` in ``plans`` and ``country`` == ``country``.
      ``rollout``   boolean, ``True`` for ``percent``% of targeting keys.
      ``semver``    boolean: ``appVersion`` >= ``min_version`` (semantic
                    version comparison).
    """

    key: str
    kind: str
    value: bool = True
    email_suffix: str = EMAIL_SUFFIX
    plans: tuple[str, ...] = PLANS
    country: str = "NL"
    percent: int = ROLLOUT_PERCENT
    min_version: str = "2.0.0"
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------
# Specs per workload
# --------------------------------------------------------------------------


def static_specs() -> list[FlagSpec]:
    return [FlagSpec(STATIC_KEY, "static", value=True)]


def targeted_specs() -> list[FlagSpec]:
    return [FlagSpec(TARGETED_KEY, "targeted")]


def rollout_specs() -> list[FlagSpec]:
    return [FlagSpec(ROLLOUT_KEY, "rollout", percent=ROLLOUT_PERCENT)]


def mixed_specs(n: int = 200) -> list[FlagSpec]:
    """``n`` flags, cycling static / targeted / rollout / semver.

    Parameters alternate so that roughly half the targeted and semver flags
    match ``mixed_context()`` and half do not (no evaluator can short-circuit
    on a uniform answer).
    """
    specs: list[FlagSpec] = []
    for i in range(n):
        kind = ("static", "targeted", "rollout", "semver")[i % 4]
        j = i // 4
        key = f"mixed-{kind}-{j:03d}"
        if kind == "static":
            specs.append(FlagSpec(key, kind, value=(j % 3 != 0)))
        elif kind == "targeted":
            specs.append(FlagSpec(key, kind, country=("NL" if j % 2 == 0 else "DE")))
        elif kind == "rollout":
            specs.append(FlagSpec(key, kind, percent=ROLLOUT_PERCENT))
        else:
            specs.append(FlagSpec(key, kind, min_version=("2.0.0" if j % 2 == 0 else "3.1.0")))
    return specs


def specs_for(workload: str) -> list[FlagSpec]:
    if workload == "static":
        return static_specs()
    if workload == "targeted":
        return targeted_specs()
    if workload == "rollout":
        return rollout_specs()
    if workload == "all200":
        return mixed_specs(200)
    raise ValueError(f"unknown workload {workload!r}; expected one of {WORKLOADS}")


# --------------------------------------------------------------------------
# Contexts (flagd/OpenFeature shape: targetingKey + flat attributes)
# --------------------------------------------------------------------------


def targeted_context() -> dict[str, Any]:
    return {
        "targetingKey": "user-123",
        "email": "a@example.com",
        "plan": "premium",
        "country": "NL",
    }


def targeted_context_nonmatching() -> dict[str, Any]:
    """Same user in a different country: the targeted flag must say "off"."""
    ctx = targeted_context()
    ctx["country"] = "DE"
    return ctx


def rollout_contexts(n: int = 1000) -> list[dict[str, Any]]:
    return [{"targetingKey": f"user-{i:05d}"} for i in range(n)]


def mixed_context() -> dict[str, Any]:
    ctx = targeted_context()
    ctx["appVersion"] = "2.3.1"
    return ctx


def contexts_for(workload: str) -> list[dict[str, Any]]:
    """The contexts a workload cycles over (a single one except for rollout)."""
    if workload == "static":
        return [{"targetingKey": "user-123"}]
    if workload == "targeted":
        return [targeted_context()]
    if workload == "rollout":
        return rollout_contexts(1000)
    if workload == "all200":
        return [mixed_context()]
    raise ValueError(f"unknown workload {workload!r}")


# --------------------------------------------------------------------------
# Expected answers (used by adapters to self-check at construction time)
# --------------------------------------------------------------------------


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("-")[0].split("."))


def expected_value(spec: FlagSpec, ctx: dict[str, Any]) -> Any:
    """The deterministic answer for ``spec`` under ``ctx``.

    Returns ``None`` for rollout flags, whose per-user answer depends on each
    evaluator's own hash function (only the overall share is comparable).
    """
    if spec.kind == "static":
        return spec.value
    if spec.kind == "targeted":
        hit = (
            str(ctx.get("email", "")).endswith(spec.email_suffix)
            and ctx.get("plan") in spec.plans
            and ctx.get("country") == spec.country
        )
        return "on" if hit else "off"
    if spec.kind == "semver":
        return _version_tuple(str(ctx["appVersion"])) >= _version_tuple(spec.min_version)
    if spec.kind == "rollout":
        return None
    raise ValueError(spec.kind)


def check_results(workload: str, spec_values: dict[str, Any], ctx: dict[str, Any]) -> None:
    """Assert a single-context pass produced the deterministic answers."""
    specs = specs_for(workload)
    missing = [s.key for s in specs if s.key not in spec_values]
    assert not missing, f"{workload}: no value for {missing[:5]}"
    for spec in specs:
        want = expected_value(spec, ctx)
        got = spec_values[spec.key]
        if want is None:
            assert isinstance(got, bool), f"{spec.key}: rollout gave non-bool {got!r}"
        else:
            assert got == want, f"{workload}/{spec.key}: got {got!r}, want {want!r}"
    rollout_hits = [spec_values[s.key] for s in specs if s.kind == "rollout"]
    if len(rollout_hits) >= 20:
        share = sum(rollout_hits) / len(rollout_hits)
        assert 0.02 <= share <= 0.6, f"{workload}: implausible rollout share {share:.2f}"


def check_rollout_share(
    values: list[bool], percent: int = ROLLOUT_PERCENT, tol: float = 5.0
) -> float:
    """Assert the share of ``True`` is within ``tol`` points of ``percent``."""
    assert all(isinstance(v, bool) for v in values), "rollout produced non-bool values"
    share = 100.0 * sum(values) / len(values)
    assert abs(share - percent) <= tol, f"rollout share {share:.1f}% not within {tol} of {percent}%"
    return share


# --------------------------------------------------------------------------
# flagd flag-definition documents
# --------------------------------------------------------------------------


def _flagd_flag(spec: FlagSpec) -> dict[str, Any]:
    if spec.kind == "static":
        return {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "on" if spec.value else "off",
        }
    if spec.kind == "targeted":
        rule = {
            "and": [
                {"ends_with": [{"var": "email"}, spec.email_suffix]},
                {"in": [{"var": "plan"}, list(spec.plans)]},
                {"==": [{"var": "country"}, spec.country]},
            ]
        }
        return {
            "state": "ENABLED",
            "variants": {"on": "on", "off": "off"},
            "defaultVariant": "off",
            "targeting": {"if": [rule, "on", "off"]},
        }
    if spec.kind == "rollout":
        return {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"fractional": [["on", spec.percent], ["off", 100 - spec.percent]]},
        }
    if spec.kind == "semver":
        return {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {
                "if": [{"sem_ver": [{"var": "appVersion"}, ">=", spec.min_version]}, "on", "off"]
            },
        }
    raise ValueError(spec.kind)


def flagd_doc(specs: list[FlagSpec]) -> dict[str, Any]:
    return {"flags": {spec.key: _flagd_flag(spec) for spec in specs}}


def rollout_doc() -> dict[str, Any]:
    return flagd_doc(rollout_specs())


def mixed_doc(n: int = 200) -> dict[str, Any]:
    return flagd_doc(mixed_specs(n))


def doc_for(workload: str) -> dict[str, Any]:
    return flagd_doc(specs_for(workload))


def flag_type(spec: FlagSpec) -> str:
    """OpenFeature value type of the flag: ``"boolean"`` or ``"string"``."""
    return "string" if spec.kind == "targeted" else "boolean"


def default_for(spec: FlagSpec) -> Any:
    """Caller-side default passed to typed lookups (``"default"`` is never a correct
    string answer, so a string flag falling back to it fails the self-check)."""
    return "default" if spec.kind == "targeted" else False
