"""Code generation (flagedge.codegen): a flag's JSON Logic becomes Python whose only
literals are names it made up. Hostile text in flag keys, variant names, rule constants and
var paths is data: rules match exactly what they say, and nothing in a definition runs."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from flagedge.codegen import SLOT_PARSE_ERROR, compile_rule
from flagedge.definitions import parse_document
from flagedge.hashing import Scheme
from flagedge.model import Reason
from flagedge.snapshot import Snapshot
from tests.support.hostile import CANARY, FAST, PY_CANARY, hostile, hostile_nonempty, storable

NOW = 1_700_000_000


def _two_variants(hit: str, miss: str) -> dict[str, str]:
    return {hit: "hit", miss: "miss"}


@FAST
@given(key=hostile_nonempty, s=storable, x=hostile, hit=hostile_nonempty, miss=hostile_nonempty)
def test_hostile_equality_constant_matches_exactly(
    key: str, s: str, x: str, hit: str, miss: str
) -> None:
    assume(hit != miss)
    doc = {
        "flags": {
            key: {
                "state": "ENABLED",
                "variants": _two_variants(hit, miss),
                "defaultVariant": miss,
                "targeting": {"if": [{"==": [{"var": "x"}, s]}, hit, miss]},
            }
        }
    }
    snap = Snapshot.build(doc)
    for ctx_value in (s, x):
        res = snap.evaluate(key, {"x": ctx_value}, NOW)
        want = hit if ctx_value == s else miss
        assert (res.variant, res.value, res.reason) == (
            want,
            "hit" if want == hit else "miss",
            Reason.TARGETING_MATCH,
        ), (doc, ctx_value, res)
    assert not CANARY.exists()


@FAST
@given(
    key=hostile_nonempty,
    s=storable,
    x=hostile,
    others=st.lists(storable, max_size=3),
    op=st.sampled_from(["in-list", "in-str", "starts_with", "ends_with", "!="]),
)
def test_hostile_constants_in_string_operators(
    key: str, s: str, x: str, others: list[str], op: str
) -> None:
    rule: dict[str, Any]
    if op == "in-list":
        rule, expect = {"in": [{"var": "x"}, [*others, s]]}, (lambda v: v in [*others, s])
    elif op == "in-str":
        rule, expect = {"in": [s, {"var": "x"}]}, (lambda v: s in v)
    elif op == "!=":
        rule, expect = {"!=": [{"var": "x"}, s]}, (lambda v: v != s)
    else:
        method = "startswith" if op == "starts_with" else "endswith"
        rule, expect = {op: [{"var": "x"}, s]}, (lambda v: getattr(v, method)(s))
    doc = {
        "flags": {
            key: {
                "state": "ENABLED",
                "variants": {"yes": True, "no": False},
                "targeting": {"if": [rule, "yes", "no"]},
            }
        }
    }
    snap = Snapshot.build(doc)
    for v in (x, s, s + x, x + s):
        res = snap.evaluate(key, {"x": v}, NOW)
        assert res.variant == ("yes" if expect(v) else "no"), (rule, v, res)
    assert not CANARY.exists()


@FAST
@given(key=hostile_nonempty, path=hostile_nonempty, value=hostile_nonempty)
def test_hostile_var_paths_and_keys(key: str, path: str, value: str) -> None:
    """A var path is data: it reads the (nested, for dotted paths) context entry it names."""
    assume(not path.startswith("$flagd"))
    parts = path.split(".")
    assume(all(parts))  # "a..b" and ".x" name nothing JSON Logic can reach with objects
    ctx: dict[str, Any] = {}
    node = ctx
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    doc = {
        "flags": {
            key: {
                "state": "ENABLED",
                "variants": {value: "named", "other": "o"}
                if value != "other"
                else {value: "named"},
                "defaultVariant": value,
                "targeting": {
                    "if": [
                        {"==": [{"var": "$flagd.flagKey"}, key]},
                        {"var": path},
                        "other",
                    ]
                },
            }
        }
    }
    snap = Snapshot.build(doc)
    res = snap.evaluate(key, ctx, NOW)
    assert (res.variant, res.value, res.reason) == (value, "named", Reason.TARGETING_MATCH), res
    # Without the entry the var is null: the default variant, reason DEFAULT.
    res = snap.evaluate(key, {}, NOW)
    assert (res.variant, res.reason) == (value, Reason.DEFAULT), res
    assert not CANARY.exists()


def test_python_source_in_definitions_is_never_run() -> None:
    doc = {
        "flags": {
            PY_CANARY: {
                "state": "ENABLED",
                "variants": {PY_CANARY: PY_CANARY, "b": "b"},
                "defaultVariant": PY_CANARY,
                "targeting": {
                    "if": [
                        {"==": [{"var": "x"}, PY_CANARY]},
                        PY_CANARY,
                        {"in": [PY_CANARY, [PY_CANARY]]},
                        "b",
                        None,
                    ]
                },
                "metadata": {"note": PY_CANARY},
            }
        }
    }
    snap = Snapshot.build(doc)
    res = snap.evaluate(PY_CANARY, {"x": PY_CANARY}, NOW)
    assert res.variant == PY_CANARY and res.value == PY_CANARY
    assert snap.evaluate(PY_CANARY, {}, NOW).variant == "b"
    assert not CANARY.exists()


# -- what a rule can say ------------------------------------------------------------------------


def one_flag(targeting: Any, variants: dict[str, Any] | None = None, **metadata: Any) -> Snapshot:
    return Snapshot.build(
        {
            "metadata": metadata,
            "flags": {
                "f": {
                    "state": "ENABLED",
                    "variants": variants or {"yes": "Y", "no": "N"},
                    "defaultVariant": "no",
                    "targeting": targeting,
                }
            },
        }
    )


def test_a_var_whose_path_is_computed_reads_the_path_it_computes() -> None:
    snap = one_flag({"var": {"cat": ["pl", "an"]}}, {"pro": 1, "free": 0, "no": -1})
    assert snap.evaluate("f", {"plan": "pro"}, NOW).variant == "pro"
    by_index = one_flag(
        {"if": [{"==": [{"var": [{"var": "i"}]}, "b"]}, "yes", "no"]},
    )
    assert by_index.evaluate("f", {"i": "1", "1": "b"}, NOW).variant == "yes"
    assert by_index.evaluate("f", {"i": "0", "1": "b"}, NOW).variant == "no"
    numeric = one_flag({"if": [{"var": 0}, "yes", "no"]})
    assert numeric.evaluate("f", {"0": True}, NOW).variant == "yes"


def test_an_empty_var_path_is_the_whole_context_with_flagd_properties() -> None:
    for path in ([], ""):
        # Never empty, so never falsy: the $flagd properties are always there.
        snap = one_flag({"if": [{"!!": [{"var": path}]}, "yes", "no"]})
        assert snap.evaluate("f", {}, NOW).variant == "yes"


def test_flagd_properties_name_the_flag_and_the_time_and_nothing_else() -> None:
    snap = one_flag(
        {
            "if": [
                {"==": [{"var": "$flagd.flagKey"}, "f"]},
                {
                    "if": [
                        {"==": [{"var": ["$flagd.nope", "fallback"]}, "fallback"]},
                        {"if": [{"var": "$flagd"}, "yes", "no"]},
                        "no",
                    ]
                },
                "no",
            ]
        }
    )
    assert snap.evaluate("f", {}, NOW).variant == "yes"
    timed = one_flag({"if": [{">": [{"var": "$flagd.timestamp"}, 1_000]}, "yes", "no"]})
    assert timed.evaluate("f", {}, NOW).variant == "yes"
    assert timed.evaluate("f", {}, 999).variant == "no"


def test_a_condition_may_itself_be_an_if() -> None:
    snap = one_flag({"if": [{"if": [{"var": "a"}, {"var": "b"}, {"var": "c"}]}, "yes", "no"]})
    assert snap.evaluate("f", {"a": 1, "b": 1}, NOW).variant == "yes"
    assert snap.evaluate("f", {"a": 1, "b": 0, "c": 1}, NOW).variant == "no"
    assert snap.evaluate("f", {"a": 0, "c": 1}, NOW).variant == "yes"
    empty = one_flag({"if": [{"!": [{"if": []}]}, "yes", "no"]})  # if of nothing is null
    assert empty.evaluate("f", {}, NOW).variant == "yes"


def test_an_object_of_several_keys_in_a_rule_is_data_not_an_operation() -> None:
    snap = one_flag({"if": [{"!!": [{"a": 1, "b": 2}]}, "yes", "no"]})
    assert snap.evaluate("f", {}, NOW).variant == "yes"
    assert not snap.problems


def test_a_deeply_nested_expression_evaluates_like_a_shallow_one() -> None:
    # Generated code is split into helpers every few levels (Python's parser has limits).
    expression: Any = {"var": "x"}
    for _ in range(60):
        expression = {"+": [1, expression]}
    snap = one_flag({"if": [{"==": [expression, 61]}, "yes", "no"]})
    assert snap.evaluate("f", {"x": 1}, NOW).variant == "yes"
    assert snap.evaluate("f", {"x": 2}, NOW).variant == "no"


def test_fractional_buckets_computed_at_evaluation_time_split_like_literal_ones() -> None:
    literal = one_flag({"fractional": [["yes", 50], ["no", 50]]})
    computed = one_flag({"fractional": [[{"cat": ["y", "es"]}, 50], ["no", {"+": [25, 25]}]]})
    users = [{"targetingKey": f"user-{i}"} for i in range(200)]
    assert [computed.evaluate("f", u, NOW).variant for u in users] == [
        literal.evaluate("f", u, NOW).variant for u in users
    ]
    res = computed.evaluate("f", {}, NOW)  # no targeting key, no bucket: the default
    assert (res.variant, res.reason) == ("no", Reason.DEFAULT)


@pytest.mark.parametrize(
    "buckets",
    [
        [[{"cat": ["y", "es"]}, "fifty"]],  # a weight that is not a number
        [[{"cat": ["y", "es"]}, 12.5]],  # or not a whole number
        [[{"cat": ["y", "es"]}, 50], "no"],  # a bucket that is not a list
        [[{"cat": ["y", "es"]}, 0], ["no", 0]],  # nothing to share
        [[{"cat": ["y", "es"]}, 50, 1]],  # too long
    ],
)
def test_computed_fractional_buckets_that_make_no_split_give_the_default(
    buckets: list[Any],
) -> None:
    snap = one_flag({"fractional": buckets})
    res = snap.evaluate("f", {"targetingKey": "user-1"}, NOW)
    assert (res.variant, res.reason) == ("no", Reason.DEFAULT)


def test_computed_fractional_buckets_take_whole_float_weights() -> None:
    snap = one_flag({"fractional": [[{"cat": ["y", "es"]}, 1.0], ["no", 0]]})
    assert snap.evaluate("f", {"targetingKey": "user-1"}, NOW).variant == "yes"


def test_v2_bucketing_uses_a_string_as_given_and_refuses_other_values() -> None:
    by = {"fractional": [{"var": "by"}, ["yes", 50], ["no", 50]]}
    snap = one_flag(by, fractional="v2")
    users = [f"user-{i}" for i in range(40)]
    # A string bucketing value hashes as it is: the same string, the same bucket.
    for u in users:
        assert (
            snap.evaluate("f", {"by": u}, NOW).variant
            == snap.evaluate("f", {"by": u, "targetingKey": "other"}, NOW).variant
        )
    assert len({snap.evaluate("f", {"by": u}, NOW).variant for u in users}) == 2
    for bad in (7, True, ["a"], {"a": 1}):
        res = snap.evaluate("f", {"by": bad, "targetingKey": "user-1"}, NOW)
        assert (res.variant, res.reason) == ("no", Reason.DEFAULT), bad


def test_v2_bucketing_falls_back_to_flag_key_and_targeting_key_for_a_null_value() -> None:
    explicit = one_flag({"fractional": [{"var": "by"}, ["yes", 50], ["no", 50]]}, fractional="v2")
    implicit = one_flag({"fractional": [["yes", 50], ["no", 50]]}, fractional="v2")
    for i in range(40):
        ctx = {"targetingKey": f"user-{i}"}
        assert explicit.evaluate("f", ctx, NOW).variant == implicit.evaluate("f", ctx, NOW).variant
    for ctx in ({}, {"targetingKey": ""}, {"targetingKey": 5}):
        res = explicit.evaluate("f", ctx, NOW)
        assert (res.variant, res.reason) == ("no", Reason.DEFAULT), ctx


def test_a_fractional_with_no_buckets_disables_its_flag_with_the_reason() -> None:
    snap = one_flag({"fractional": []})
    res = snap.evaluate("f", {"targetingKey": "user-1"}, NOW)
    assert (res.reason, res.error_code) == (Reason.ERROR, "PARSE_ERROR")
    assert res.error_message == "invalid targeting: fractional needs at least one bucket"


def test_codegen_refuses_an_operator_it_does_not_know_as_a_parse_error_rule() -> None:
    # Definitions refuse unknown operators first; codegen still does not trust its input.
    (definition,) = parse_document(
        {"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "targeting": {"var": "x"}}}}
    ).flags
    unchecked = dataclasses.replace(definition, targeting={"nope": [1]})
    code = compile_rule(unchecked, Scheme.V3, {"a": 0})
    assert code.problem == 'unknown operator "nope"' and code.bind is None
    assert code.rule({}, NOW) == 1 + SLOT_PARSE_ERROR


def test_a_rule_python_cannot_compile_disables_its_flag_with_the_reason() -> None:
    # Each "if" in a then-branch is one more indented block; Python's parser stops at 100
    # levels, below the 256 JSON levels definitions allow. One flag fails, not the set.
    deep: Any = "yes"
    for i in range(120):
        deep = {"if": [{"var": f"k{i}"}, deep, "no"]}
    snap = Snapshot.build(
        {
            "flags": {
                "deep": {
                    "state": "ENABLED",
                    "variants": {"yes": 1, "no": 0},
                    "defaultVariant": "no",
                    "targeting": deep,
                },
                "plain": {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on"},
            }
        }
    )
    res = snap.evaluate("deep", {f"k{i}": 1 for i in range(120)}, NOW)
    assert (res.reason, res.error_code) == (Reason.ERROR, "PARSE_ERROR")
    assert res.error_message is not None
    assert res.error_message.startswith("invalid targeting: rule cannot be compiled")
    assert snap.evaluate("plain", {}, NOW).value is True
