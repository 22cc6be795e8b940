"""Compiled flags (flagedge.compiler): every answer a flag can give is built once, at load;
a request runs the rule (if any) and picks one. Overrides wrap a compiled flag without
recompiling it, and an override that cannot apply is refused with its path."""

from __future__ import annotations

from typing import Any

import pytest

from flagedge.compiler import check_override, compile_flag
from flagedge.definitions import parse_document
from flagedge.hashing import Scheme
from flagedge.model import ErrorCode, FlagType, Override, OverrideKind, Reason
from flagedge.snapshot import Snapshot

NOW = 1_700_000_000

DOC: dict[str, Any] = {
    "flags": {
        "static": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a"},
        "targeted": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "on", None]},
        },
        "off": {"state": "DISABLED", "variants": {"on": True}, "defaultVariant": "on"},
        "broken": {
            "state": "ENABLED",
            "variants": {"on": True},
            "defaultVariant": "on",
            "targeting": {"nonsense": []},
        },
    }
}


def compiled() -> dict[str, Any]:
    document = parse_document(DOC)
    return {d.key: compile_flag(d, document.scheme) for d in document.flags}


@pytest.mark.parametrize("context", [{}, {"plan": "pro"}, {"plan": "free"}])
def test_a_compiled_flag_resolves_a_context_as_the_snapshot_evaluates_it(
    context: dict[str, Any],
) -> None:
    snap = Snapshot.build(DOC)
    for key, flag in compiled().items():
        assert flag.resolve(context, NOW) == snap.evaluate(key, context, NOW)


def test_only_a_flag_with_a_working_rule_runs_it() -> None:
    flags = compiled()
    assert flags["targeted"].has_targeting and flags["targeted"].fixed < 0
    for key in ("static", "off"):
        assert not flags[key].has_targeting and flags[key].answer is not None
    broken = flags["broken"]  # it has targeting, but its answer is fixed: PARSE_ERROR
    assert broken.has_targeting and broken.answer is not None
    assert broken.answer.error_code is ErrorCode.PARSE_ERROR
    assert broken.rule_problem == 'unknown operator "nonsense"'
    # Its rule, if run anyway, gives the same answer.
    assert broken.outcomes[broken.rule({}, NOW)] == broken.answer


def test_answers_are_typed_once_per_requested_type() -> None:
    static = compiled()["static"]
    as_float = static.typed(FlagType.FLOAT)
    assert as_float is static.typed(FlagType.FLOAT)  # built once
    assert [r.value for r in as_float if r.variant is not None] == [1.0, 2.0, 1.0, 1.0]
    assert all(type(r.value) is float for r in as_float if r.variant is not None)
    as_string = static.typed(FlagType.STRING)
    for mine, typed in zip(static.outcomes, as_string, strict=True):
        if mine.variant is None:  # no value, no type: not a mismatch
            assert typed is mine
        else:
            assert (typed.reason, typed.error_code) == (Reason.ERROR, ErrorCode.TYPE_MISMATCH)


@pytest.mark.parametrize(
    ("override", "problems"),
    [
        (Override(OverrideKind.KILL), []),
        (Override(OverrideKind.KILL, "b"), []),
        (
            Override(OverrideKind.KILL, "c"),
            ['overrides.static.variant: "c" is not a variant (a, b)'],
        ),
        (Override(OverrideKind.ROLLOUT, "b", 10), []),
        (
            Override(OverrideKind.ROLLOUT, None, 10),
            ["overrides.static.variant: a rollout names the variant it rolls out"],
        ),
        (
            Override(OverrideKind.ROLLOUT, "b", 120),
            ["overrides.static.percent: 120 is not a percentage 0-100"],
        ),
        (
            Override(OverrideKind.ROLLOUT, "b"),
            ["overrides.static.percent: null is not a percentage 0-100"],
        ),
    ],
)
def test_an_override_that_cannot_apply_is_refused_with_its_path(
    override: Override, problems: list[str]
) -> None:
    assert [str(p) for p in check_override(compiled()["static"], "static", override)] == problems


def test_an_override_for_no_flag_is_refused() -> None:
    (problem,) = check_override(None, "gone", Override(OverrideKind.KILL))
    assert str(problem) == 'overrides.gone: no flag named "gone"'


def test_a_v2_flag_set_compiles_its_rules_for_v2_bucketing() -> None:
    doc = {
        "flags": {
            "f": {
                "state": "ENABLED",
                "variants": {"a": 1, "b": 2},
                "defaultVariant": "a",
                "targeting": {"fractional": [["a", 50], ["b", 50]]},
            }
        }
    }
    (definition,) = parse_document(doc).flags
    v2, v3 = compile_flag(definition, Scheme.V2), compile_flag(definition, Scheme.V3)
    users = [{"targetingKey": f"user-{i}"} for i in range(100)]
    assert [v2.resolve(u, NOW) for u in users] == [
        Snapshot.build(doc, fractional="v2").evaluate("f", u, NOW) for u in users
    ]
    assert [v2.resolve(u, NOW) for u in users] != [v3.resolve(u, NOW) for u in users]
