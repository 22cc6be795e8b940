"""Code generation (flagedge.codegen): a flag's JSON Logic becomes Python whose only
literals are names it made up. Hostile text in flag keys, variant names, rule constants and
var paths is data: rules match exactly what they say, and nothing in a definition runs."""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from flagedge.model import Reason
from flagedge.snapshot import Snapshot
from tests.support.hostile import CANARY, FAST, PY_CANARY, hostile, hostile_nonempty

NOW = 1_700_000_000


def _two_variants(hit: str, miss: str) -> dict[str, str]:
    return {hit: "hit", miss: "miss"}


@FAST
@given(key=hostile_nonempty, s=hostile, x=hostile, hit=hostile_nonempty, miss=hostile_nonempty)
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
    s=hostile,
    x=hostile,
    others=st.lists(hostile, max_size=3),
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
