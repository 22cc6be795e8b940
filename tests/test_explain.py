"""The explaining interpreter (flagedge.explain) agrees with the compiled hot path on every
golden case, and says which branch decided."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flagedge.explain import describe, explain, outline
from flagedge.model import Override, OverrideKind, Reason
from flagedge.snapshot import Snapshot
from tests.support.golden import case_id, load_cases

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


# -- random rules: the interpreter and the compiler agree beyond the golden cases -------------


KEYS = ["plan", "age", "email", "targetingKey", "tags", "version", "nested.x"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from([0.5, -1.5, 2.0]),
    st.sampled_from(["", "a", "pro", "1", "2.0.0", "@x.dev", "a@x.dev"]),
)
var = st.builds(lambda k: {"var": k}, st.sampled_from([*KEYS, "$flagd.flagKey", ""]))


def _ops(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    two = st.tuples(children, children)
    return st.one_of(
        st.builds(
            lambda op, ab: {op: list(ab)},
            st.sampled_from(
                [
                    "==",
                    "!=",
                    "===",
                    "!==",
                    "<",
                    "<=",
                    ">",
                    ">=",
                    "+",
                    "-",
                    "*",
                    "/",
                    "%",
                    "cat",
                    "starts_with",
                    "ends_with",
                    "merge",
                    "max",
                    "min",
                ]
            ),
            two,
        ),
        st.builds(lambda a, b, c: {"<": [a, b, c]}, children, children, children),
        st.builds(
            lambda op, xs: {op: xs}, st.sampled_from(["and", "or"]), st.lists(children, max_size=3)
        ),
        st.builds(lambda x: {"!": [x]}, children),
        st.builds(lambda x: {"!!": x}, children),
        st.builds(lambda a, xs: {"in": [a, xs]}, children, st.lists(scalars, max_size=3)),
        st.builds(lambda a, b: {"in": [a, b]}, children, children),
        st.builds(lambda xs: {"if": xs}, st.lists(children, max_size=5)),
        st.builds(
            lambda a, op, b: {"sem_ver": [a, op, b]},
            children,
            st.sampled_from(["=", "!=", "<", ">=", "^", "~", "?"]),
            children,
        ),
        st.builds(lambda xs: {"missing": xs}, st.lists(st.sampled_from(KEYS), max_size=2)),
        st.builds(lambda a, f: {"some": [a, f]}, children, children),
        st.builds(lambda a, f: {"map": [a, {"var": ""}]}, children, children),
        st.builds(lambda w: {"fractional": [["on", w], ["off", 100 - w]]}, st.integers(0, 100)),
        st.builds(
            lambda by, w: {"fractional": [by, ["on", w], ["off", 10]]}, children, st.integers(0, 10)
        ),
    )


rules = st.recursive(st.one_of(scalars, var, st.sampled_from(["on", "off"])), _ops, max_leaves=12)
contexts = st.fixed_dictionaries(
    {},
    optional={
        "plan": scalars,
        "age": scalars,
        "email": scalars,
        "targetingKey": st.sampled_from(["u1", "u2", "", "user-42"]),
        "tags": st.lists(scalars, max_size=3),
        "version": st.sampled_from(["1.2.3", "2.0.0", "v1", "x"]),
        "nested": st.fixed_dictionaries({"x": scalars}),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules, contexts, st.sampled_from(["v2", "v3"]))
def test_explain_agrees_with_the_engine_on_random_rules(
    rule: Any, ctx: dict[str, Any], scheme: str
) -> None:
    doc = {
        "flags": {
            "f": {
                "state": "ENABLED",
                "variants": {"on": True, "off": False, "1": True, "true": False, "a": True},
                "defaultVariant": "off",
                "targeting": rule if isinstance(rule, dict) else {"if": [True, rule]},
            }
        }
    }
    snap = Snapshot.build(doc, fractional=scheme)
    hot = snap.evaluate("f", ctx, NOW)
    slow = explain(snap, "f", ctx, NOW).resolution
    assert (slow.reason, slow.variant, slow.error_code) == (hot.reason, hot.variant, hot.error_code)
    assert _same(slow.value, hot.value)
