"""rulelists.py: the lists of a rule that the admin's forms edit (pure, no servers)."""

from __future__ import annotations

from typing import Any

import pytest

from flagedge.errors import DefinitionError
from flagedge.rulelists import ListEdit, edit_lists, list_operands
from flagedge.snapshot import Snapshot

FLAG: dict[str, Any] = {
    "state": "ENABLED",
    "variants": {"on": True, "off": False},
    "defaultVariant": "off",
    "targeting": {
        "if": [
            {
                "or": [
                    {"in": [{"var": "targetingKey"}, ["u1", "u2"]]},
                    {"in": [{"var": "accountId"}, [7, 9]]},
                ]
            },
            "on",
            {"or": [{"ends_with": [{"var": "email"}, "@a.dev"]}]},
            "on",
            {"in": ["@x", {"var": "email"}]},  # a substring test: not a list
            "on",
            "off",
        ]
    },
}


def test_every_editable_list_is_found_with_its_path_subject_and_kind() -> None:
    found = [(o.path, o.subject, o.kind, o.values) for o in list_operands(FLAG)]
    assert found == [
        ("targeting.if[0].or[0].in[1]", "targetingKey", "one-of", ("u1", "u2")),
        ("targeting.if[0].or[1].in[1]", "accountId", "one-of", (7, 9)),
        ("targeting.if[2].or", "email", "ends-with", ("@a.dev",)),
    ]


def test_adding_and_removing_values_changes_a_copy_and_the_result_still_compiles() -> None:
    edits = [
        ListEdit("targeting.if[0].or[0].in[1]", add=("u3", "u1"), remove=("u2",)),
        ListEdit("targeting.if[0].or[1].in[1]", add=("11",)),
        ListEdit("targeting.if[2].or", add=("@b.dev",)),
    ]
    out = edit_lists(FLAG, edits)
    assert out["targeting"]["if"][0]["or"][0]["in"][1] == ["u1", "u3"]
    assert out["targeting"]["if"][0]["or"][1]["in"][1] == [7, 9, 11]  # a number, as the list
    assert out["targeting"]["if"][2]["or"][1] == {"ends_with": [{"var": "email"}, "@b.dev"]}
    assert FLAG["targeting"]["if"][0]["or"][0]["in"][1] == ["u1", "u2"]  # input untouched
    snap = Snapshot.build({"flags": {"f": out}})
    assert snap.evaluate("f", {"email": "z@b.dev"}, 0).variant == "on"
    assert snap.evaluate("f", {"targetingKey": "u2"}, 0).variant == "off"


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (ListEdit("targeting.if[4].in[1]", add=("x",)), "targeting.if[4].in[1]"),
        (ListEdit("targeting.nope", add=("x",)), "targeting.nope"),
        (ListEdit("targeting.if[0].or[0].in[1]", remove=("ghost",)), "edits[0].remove"),
        (ListEdit("targeting.if[0].or[0].in[1]", add=("  ",)), "edits[0].add"),
        (ListEdit("targeting.if[0].or[0].in[1]", add=(True,)), "edits[0].add"),  # type: ignore[arg-type]
        (ListEdit("targeting.if[2].or", remove=("@a.dev",)), "targeting.if[2].or"),
    ],
)
def test_a_bad_edit_is_refused_by_path(edit: ListEdit, path: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        edit_lists(FLAG, [edit])
    assert [p.path for p in caught.value.problems] == [path]


def test_a_flag_without_targeting_has_no_lists() -> None:
    assert list_operands({"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}) == []
