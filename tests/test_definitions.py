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


def test_refusal_is_located() -> None:
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
