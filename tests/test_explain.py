"""The explaining interpreter (flagedge.explain) agrees with the compiled hot path on every
golden case, and says which branch decided."""

from __future__ import annotations

from typing import Any

import pytest
from golden_cases import case_id, load_cases

from flagedge.explain import describe, explain, outline
from flagedge.model import Override, OverrideKind, Reason
from flagedge.snapshot import Snapshot

_CASES = load_cases()
NOW = 1_700_000_000


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return bool(a == b)


@pytest.mark.parametrize(
    ("stem", "case", "doc"),
    [pytest.param(s, c, d, id=case_id(s, c, i)) for i, (s, c, d) in enumerate(_CASES)],
)
def test_explain_agrees_with_the_engine_on_every_golden_case(
    stem: str, case: dict[str, Any], doc: dict[str, Any]
) -> None:
    snap = Snapshot.build(doc, fractional=case.get("fractional", "v3"))
    ctx = dict(case.get("context") or {})
    now = case.get("now", NOW)
    hot = snap.evaluate(case["flag"], ctx, now)
    slow = explain(snap, case["flag"], ctx, now).resolution
    assert slow.reason == hot.reason, case["name"]
    assert slow.variant == hot.variant, case["name"]
    assert _same(slow.value, hot.value), case["name"]
    assert slow.error_code == hot.error_code, case["name"]


def test_golden_cases_exist_for_the_agreement_test() -> None:
    assert len(_CASES) >= 150


PERMISSION = {
    "flags": {
        "beta": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {
                "if": [
                    {"in": [{"var": "plan"}, ["pro", "enterprise"]]},
                    "on",
                    {"ends_with": [{"var": "email"}, "@flagedge.dev"]},
                    "on",
                    {"fractional": [["on", 25], ["off", 75]]},
                ]
            },
        }
    }
}


def test_the_condition_that_matched_is_named() -> None:
    snap = Snapshot.build(PERMISSION)
    got = explain(snap, "beta", {"targetingKey": "u1", "email": "a@flagedge.dev"}, NOW)
    assert got.resolution.variant == "on"
    assert got.resolution.reason is Reason.TARGETING_MATCH
    assert [s.result for s in got.steps] == [False, True]
    assert got.matched is not None
    assert got.matched.condition == 'email ends with "@flagedge.dev"'
    assert got.matched.path == "targeting.if[2]"


def test_a_fractional_decision_shows_the_bucket_and_its_boundaries() -> None:
    snap = Snapshot.build(PERMISSION)
    got = explain(snap, "beta", {"targetingKey": "user-42"}, NOW)
    assert [s.result for s in got.steps] == [False, False]
    (b,) = got.buckets
    assert b.total == 100 and b.bucket is not None and 0 <= b.bucket < 100
    assert [(x.variant, x.low, x.high) for x in b.boundaries] == [("on", 0, 25), ("off", 25, 100)]
    assert b.chosen == ("on" if b.bucket < 25 else "off") == got.resolution.variant


def test_a_kill_switch_is_the_reason_given() -> None:
    snap = Snapshot.build(PERMISSION, overrides={"beta": Override(OverrideKind.KILL, "off")})
    got = explain(snap, "beta", {"plan": "pro"}, NOW)
    assert got.decided_by == "override"
    assert got.resolution.reason is Reason.DISABLED and got.resolution.variant == "off"
    assert "kill switch" in got.summary


def test_a_rollout_override_explains_the_key_bucket_and_agrees_with_the_engine() -> None:
    ov = Override(OverrideKind.ROLLOUT, "on", 50)
    snap = Snapshot.build(PERMISSION, overrides={"beta": ov})
    for i in range(200):
        ctx = {"targetingKey": f"user-{i}"}
        got = explain(snap, "beta", ctx, NOW)
        hot = snap.evaluate("beta", ctx, NOW)
        assert (got.resolution.variant, got.resolution.reason) == (hot.variant, hot.reason)
        assert got.buckets[0].total == 10_000


def test_an_unknown_flag_is_flag_not_found() -> None:
    got = explain(Snapshot.build(PERMISSION), "nope", {}, NOW)
    assert got.decided_by == "not-found" and got.resolution.reason is Reason.ERROR


def test_rules_render_as_sentences() -> None:
    assert describe({"in": [{"var": "plan"}, ["pro", "enterprise"]]}) == (
        'plan is one of "pro", "enterprise"'
    )
    assert describe({"in": ["@x.dev", {"var": "email"}]}) == 'email contains "@x.dev"'
    assert describe({"fractional": [["on", 25], ["off", 75]]}) == (
        'split by targetingKey: "on" 25%, "off" 75%'
    )
    rows = outline(PERMISSION["flags"]["beta"]["targeting"])
    assert [r["when"] for r in rows] == [
        'plan is one of "pro", "enterprise"',
        'email ends with "@flagedge.dev"',
        None,
    ]
