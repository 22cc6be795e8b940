"""flagedge and the reference evaluator (openfeature-flagd-core) agree: on the golden cases
marked "agree" (the v2 ones with the reference's fractional swapped for v2 bucketing), and
on documents and contexts drawn from tests/support/grammar.py, whose docstring lists the
known, deliberate disagreements the grammar keeps out. The golden expectations themselves
describe flagd 0.16 (evaluation.v2)."""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flagedge.snapshot import Snapshot
from tests.support.golden import case_id, load_cases, same_json
from tests.support.grammar import (
    FLAG_KEYS,
    REQUESTED,
    VARIANT_NAMES,
    condition,
    context,
    document,
    fractional,
)
from tests.support.reference import infer_type, resolve, v2_bucketing

NOW = 1_700_000_000
# More examples for a bug hunt: FLAGEDGE_DIFF_EXAMPLES=5000 pytest tests/test_reference_evaluator.py
_EXAMPLES = int(os.environ.get("FLAGEDGE_DIFF_EXAMPLES", "300"))
_ALL = load_cases()

# -- the golden cases -----------------------------------------------------------------------


def _params() -> list[Any]:
    params = []
    for index, (stem, case, doc) in enumerate(_ALL):
        marks = []
        ref = case.get("reference", "agree")
        if ref != "agree":
            marks.append(pytest.mark.skip(reason=f"reference differs from flagd: {ref}"))
        elif case.get("fractional", "v3") != "v3":
            marks.append(
                pytest.mark.skip(reason="reference evaluator implements fractional v3 only")
            )
        params.append(pytest.param(stem, case, doc, id=case_id(stem, case, index), marks=marks))
    return params


def _resolve(doc: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    kind = case.get("type") or infer_type(doc, case["flag"])
    got = resolve(doc, case["flag"], case.get("context") or {}, kind, any_error_is_general=False)
    return got | {"kind": kind}


@pytest.mark.parametrize(("stem", "case", "doc"), _params())
def test_the_reference_gives_each_agreeing_golden_cases_answer(
    stem: str, case: dict, doc: dict
) -> None:
    expect = case["expect"]
    got = _resolve(doc, case)
    for field in ("reason", "errorCode", "variant"):
        assert got[field] == expect.get(field), (
            f"{case['name']}: {field} {got[field]!r} != {expect.get(field)!r}"
        )
    assert same_json(got["value"], expect.get("value")), (
        f"{case['name']}: value {got['value']!r} != {expect.get('value')!r}"
    )
    if got.get("kind") == "float" and got["value"] is not None:
        assert isinstance(got["value"], float)
    if "metadata" in expect and got["errorCode"] is None:
        assert same_json(got["metadata"], expect["metadata"]), (
            f"{case['name']}: metadata {got['metadata']!r}"
        )


_V2 = [(s, c, d) for s, c, d in _ALL if c.get("fractional") == "v2"]


@pytest.mark.parametrize(
    ("stem", "case", "doc"),
    [pytest.param(s, c, d, id=case_id(s, c, i)) for i, (s, c, d) in enumerate(_V2)],
)
def test_v2_cases_against_reference_with_v2_bucketing(stem: str, case: dict, doc: dict) -> None:
    """Cross-check v2 cases: the reference evaluator with its fractional swapped for v2."""
    expect = case["expect"]
    with v2_bucketing():
        got = _resolve(doc, case)
    for field in ("reason", "errorCode", "variant"):
        assert got[field] == expect.get(field), f"{case['name']}: {field} {got[field]!r}"
    assert same_json(got["value"], expect.get("value")), case["name"]


# -- generated documents ------------------------------------------------------------------


def reference(doc: dict[str, Any], key: str, ctx: dict[str, Any], requested: str) -> dict[str, Any]:
    return resolve(doc, key, ctx, requested, any_error_is_general=True)


def flagedge(doc: dict[str, Any], key: str, ctx: dict[str, Any], requested: str) -> dict[str, Any]:
    snap = Snapshot.build(copy.deepcopy(doc), fractional="v3")
    res = snap.evaluate(key, copy.deepcopy(ctx), NOW, flag_type=REQUESTED[requested])
    return {
        "value": res.value,
        "variant": res.variant,
        "reason": str(res.reason),
        "errorCode": None if res.error_code is None else str(res.error_code),
        "metadata": dict(res.metadata),
    }


def assert_agree(doc: dict[str, Any], key: str, ctx: dict[str, Any], requested: str) -> None:
    got = flagedge(doc, key, ctx, requested)
    want = reference(doc, key, ctx, requested)
    event(f"{want['reason']} {want['errorCode'] or ''}".strip())
    where = (
        f"\ndoc={doc!r}\nkey={key!r} ctx={ctx!r} type={requested}\nflagedge={got}\nreference={want}"
    )
    for field in ("reason", "errorCode", "variant"):
        assert got[field] == want[field], f"{field} differs{where}"
    assert same_json(got["value"], want["value"]), f"value differs{where}"
    if requested == "float" and got["value"] is not None:
        assert isinstance(got["value"], float), f"float value is not a float{where}"
    if want["errorCode"] is None:
        assert same_json(got["metadata"], want["metadata"]), f"metadata differs{where}"


# -- the tests ------------------------------------------------------------------------------


@settings(
    max_examples=_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=document(), ctx=context)
def test_flagedge_agrees_with_reference(case: tuple[dict[str, Any], str, str], ctx: dict) -> None:
    doc, key, requested = case
    assert_agree(doc, key, ctx, requested)


@settings(max_examples=_EXAMPLES // 2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=condition, ctx=context, key=st.sampled_from(FLAG_KEYS))
def test_conditions_agree_as_boolean_shorthand(rule: Any, ctx: dict, key: str) -> None:
    """A bare condition as targeting: true/false name the variants "true"/"false"."""
    doc = {
        "flags": {
            key: {
                "state": "ENABLED",
                "variants": {"true": "yes", "false": "no"},
                "defaultVariant": "false",
                "targeting": {"if": [rule, True, False]},
            }
        }
    }
    assert_agree(doc, key, ctx, "string")


@settings(max_examples=_EXAMPLES // 2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frac=fractional(), ctx=context, key=st.sampled_from(FLAG_KEYS))
def test_fractional_v3_agrees_with_the_reference(frac: dict[str, Any], ctx: dict, key: str) -> None:
    doc = {
        "flags": {
            key: {
                "state": "ENABLED",
                "variants": {n: i for i, n in enumerate(VARIANT_NAMES)},
                "defaultVariant": "off",
                "targeting": frac,
            }
        }
    }
    assert_agree(doc, key, ctx, "integer")


def test_differential_harness_detects_a_difference() -> None:
    """Not a tautology: the two sides see different documents here, and they differ."""
    doc = {
        "flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a"}}
    }
    other = copy.deepcopy(doc)
    other["flags"]["f"]["defaultVariant"] = "b"
    got = flagedge(other, "f", {}, "integer")
    want = reference(doc, "f", {}, "integer")
    assert got["variant"] != want["variant"]
    assert want == {
        "value": 1,
        "variant": "a",
        "reason": "STATIC",
        "errorCode": None,
        "metadata": {},
    }
