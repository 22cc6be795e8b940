"""Definitions (flagedge.definitions): a flagd document is parsed and validated, every
problem located by its JSON path; a structural problem refuses the document, a rule
problem disables one flag; the input is never mutated."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given

from flagedge.errors import DefinitionError
from flagedge.snapshot import Snapshot
from tests.support.hostile import FAST, any_document, build_or_problems

NOW = 1_700_000_000


def doc(extra: dict[str, Any]) -> dict[str, Any]:
    flags: dict[str, Any] = {
        "checkout": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"if": [{"==": [{"var": "plan"}, "premium"]}, "on", None]},
        },
        "static": {"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": "a"},
    }
    flags.update(extra)
    return {"flags": flags}


@FAST
@given(doc=any_document)
def test_any_document_builds_or_is_refused_with_located_problems(doc: Any) -> None:
    before = copy.deepcopy(doc)
    build_or_problems(doc)
    assert doc == before or json.dumps(doc, default=str) == json.dumps(before, default=str)


def test_a_refusal_locates_each_problem_by_its_path() -> None:
    with pytest.raises(DefinitionError) as info:
        Snapshot.build({"flags": {"f": {"state": "MAYBE", "variants": {"a": 1}}}})
    assert [p.path for p in info.value.problems] == ["flags.f.state"]
    with pytest.raises(DefinitionError) as info:
        Snapshot.build(["not", "an", "object"])
    assert info.value.problems[0].path == ""


def test_toggle_metadata_is_validated() -> None:
    bad = {
        "flags": {
            "f": {
                "state": "ENABLED",
                "variants": {"on": True},
                "metadata": {"kind": "forever", "expires": "next tuesday", "owner": 7},
            }
        }
    }
    with pytest.raises(DefinitionError) as err:
        Snapshot.build(bad)
    paths = sorted(str(p) for p in err.value.problems)
    assert paths == [
        'flags.f.metadata.expires: "next tuesday" is not an ISO date (YYYY-MM-DD)',
        'flags.f.metadata.kind: "forever" is not a toggle kind '
        "(release, experiment, ops, permission)",
        "flags.f.metadata.owner: must be a string, not a number",
    ]


def test_a_bad_rule_disables_one_flag_not_the_set() -> None:
    snap = Snapshot.build(
        doc(
            {
                "broken": {
                    "state": "ENABLED",
                    "variants": {"on": True},
                    "defaultVariant": "on",
                    "targeting": {"nonsense": [1, 2]},
                }
            }
        )
    )
    broken = snap.evaluate("broken", {}, NOW)
    assert broken.error_code is not None and broken.error_code.value == "PARSE_ERROR"
    assert snap.evaluate("checkout", {"plan": "premium"}, NOW).value is True
    assert [p.path for p in snap.problems] == ["flags.broken.targeting"]


def test_a_hostile_nesting_depth_disables_that_flag_only() -> None:
    deep: Any = {"var": "x"}
    for _ in range(5000):
        deep = {"!": [deep]}
    shallow: Any = {"var": "x"}
    for _ in range(100):  # 100 negations: within the limit, and x itself comes back
        shallow = {"!": [shallow]}
    snap = Snapshot.build(
        doc(
            {
                "deep": {
                    "state": "ENABLED",
                    "variants": {"true": True, "false": False},
                    "defaultVariant": "false",
                    "targeting": deep,
                },
                "shallow": {
                    "state": "ENABLED",
                    "variants": {"true": True, "false": False},
                    "defaultVariant": "false",
                    "targeting": shallow,
                },
            }
        )
    )
    assert snap.evaluate("deep", {"x": 1}, NOW).error_code is not None
    assert snap.evaluate("shallow", {"x": 1}, NOW).variant == "true"
    assert snap.evaluate("shallow", {"x": 0}, NOW).variant == "false"


def test_a_definition_set_may_choose_the_v2_scheme_in_its_metadata() -> None:
    rollout = {
        "state": "ENABLED",
        "variants": {"a": "a", "b": "b"},
        "defaultVariant": "a",
        "targeting": {"fractional": [["a", 50], ["b", 50]]},
    }
    v2 = Snapshot.build({"metadata": {"fractional": "v2"}, "flags": {"r": rollout}})
    v3 = Snapshot.build({"flags": {"r": rollout}})
    users = [{"targetingKey": f"u{i}"} for i in range(200)]
    differ = sum(
        v2.evaluate("r", u, NOW).variant != v3.evaluate("r", u, NOW).variant for u in users
    )
    assert v2.scheme.value == "v2" and v3.scheme.value == "v3"
    assert differ > 40  # two schemes, two independent assignments


def test_a_document_that_is_not_an_object_is_refused_at_its_root() -> None:
    for document in (None, "flags", 3, ["not", "an", "object"]):
        with pytest.raises(DefinitionError) as info:
            Snapshot.build(document)  # type: ignore[arg-type]
        (problem,) = info.value.problems
        assert problem.path == "" and "must be an object" in problem.message


def test_flags_may_be_an_array_of_keyed_flags_each_located_by_its_index() -> None:
    flag = {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on"}
    snap = Snapshot.build({"flags": [{"key": "a", **flag}, {"key": "b", **flag}]})
    assert snap.keys == ("a", "b")
    with pytest.raises(DefinitionError) as info:
        Snapshot.build({"flags": [{"key": "a", **flag}, flag, "x", {"key": "a", **flag}]})
    assert [str(p) for p in info.value.problems] == [
        "flags[1].key: is required and must be a string",
        "flags[2].key: is required and must be a string",
        'flags[3]: duplicate flag key "a"',
    ]


def test_an_expiry_must_be_an_iso_date_or_date_time_string() -> None:
    def expires(value: Any) -> list[str]:
        flag = {"state": "ENABLED", "variants": {"on": True}, "metadata": {"expires": value}}
        try:
            Snapshot.build({"flags": {"f": flag}})
        except DefinitionError as exc:
            return [str(p) for p in exc.problems]
        return []

    assert expires("2026-03-01") == [] and expires("2026-03-01T12:30:00") == []
    assert expires(20260301) == [
        "flags.f.metadata.expires: 20260301 is not an ISO date (YYYY-MM-DD)"
    ]
    assert expires("2026-03-01Tnoon") == [
        'flags.f.metadata.expires: "2026-03-01Tnoon" is not an ISO date (YYYY-MM-DD)'
    ]


def test_a_value_json_cannot_write_is_quoted_as_python_writes_it() -> None:
    # A document built in Python may hold values JSON has no word for; messages still name them.
    snap = Snapshot.build(
        {
            "flags": {
                "f": {
                    "state": "ENABLED",
                    "variants": {"on": True},
                    "defaultVariant": "on",
                    "targeting": {"$ref": b"shared"},
                }
            }
        }
    )
    assert [str(p) for p in snap.problems] == [
        "flags.f.targeting: $ref to a missing evaluator b'shared'"
    ]
