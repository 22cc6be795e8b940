"""The served state as flagd JSON (flagedge.rendering and the sync service's Renderings), fed
to the reference in-process evaluator (openfeature-flagd-core, the evaluator of the Python
in-process provider): it answers what the edge answers, for every golden case and for every
kind of ops override over many targeting keys, with either bucketing scheme."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from openfeature.contrib.tools.flagd.core import FlagdCore

from flagedge.model import Override, OverrideKind
from flagedge.rendering import render_document, render_flag
from flagedge.server.selector import ALL, parse_selector
from flagedge.server.sync import MAX_SELECTIONS, Renderings
from flagedge.snapshot import Snapshot
from tests.support.golden import same_json
from tests.support.reference import infer_type, v2_bucketing
from tests.support.sync_reference import case_now, edge_answer, golden_groups, reference_answer

NOW = 1_700_000_000


def reference_fed(snap: Snapshot, source: str = "flags.json") -> FlagdCore:
    """A reference evaluator holding the JSON the sync service sends for ``snap``."""
    text = Renderings(source, {}).get(snap, ALL).text
    core = FlagdCore()
    core.set_flags(text)
    return core


def scheme_of(scheme: str) -> contextlib.AbstractContextManager[None]:
    return v2_bucketing() if scheme == "v2" else contextlib.nullcontext()


# -- the golden cases ---------------------------------------------------------------------------

_GROUPS = golden_groups()


@pytest.mark.parametrize(
    ("stem", "scheme", "doc", "cases"),
    [pytest.param(*g, id=f"{g[0]}-{g[1]}") for g in _GROUPS],
)
def test_every_golden_case_answers_through_the_rendered_json_as_on_the_edge(
    stem: str, scheme: str, doc: dict[str, Any], cases: list[dict[str, Any]]
) -> None:
    snap = Snapshot.build(doc, fractional=scheme)
    core = reference_fed(snap)
    with scheme_of(scheme):
        for case in cases:
            key, context = case["flag"], dict(case.get("context") or {})
            kind = case.get("type") or infer_type(doc, key)
            edge = edge_answer(snap, key, context, kind, case_now(case))
            ref = reference_answer(core, key, context, kind)
            for field in ("reason", "errorCode", "variant"):
                assert ref[field] == edge[field], f"{case['name']}: {field} {ref} != {edge}"
            assert same_json(ref["value"], edge["value"]), f"{case['name']}: {ref} != {edge}"
            if edge["errorCode"] is None:
                assert same_json(ref["metadata"], edge["metadata"]), case["name"]


def test_the_golden_groups_cover_both_schemes_and_most_cases() -> None:
    assert {scheme for _, scheme, _, _ in _GROUPS} == {"v2", "v3"}
    assert sum(len(cases) for *_, cases in _GROUPS) >= 150


# -- ops overrides ------------------------------------------------------------------------------

DOC: dict[str, Any] = {
    "metadata": {"flagSetId": "shop", "team": "checkout"},
    "$evaluators": {"staff": {"ends_with": [{"var": "email"}, "@flagedge.dev"]}},
    "flags": {
        "targeted": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"if": [{"$ref": "staff"}, "on", None]},
            "metadata": {"team": "growth"},
        },
        "split": {
            "state": "ENABLED",
            "variants": {"a": "A", "b": "B", "c": "C"},
            "defaultVariant": "b",
            "targeting": {"fractional": [["a", 25], ["b", 25], ["c", 50]]},
        },
        "static": {
            "state": "ENABLED",
            "variants": {"small": 1, "large": 100},
            "defaultVariant": "small",
        },
        "no-default": {
            "state": "ENABLED",
            "variants": {"x": "X", "y": "Y"},
            "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "y", None]},
        },
        "disabled": {
            "state": "DISABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "on",
        },
        "broken": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"no_such_operator": [1]},
        },
        "object": {
            "state": "ENABLED",
            "variants": {"v1": {"limit": 5}, "v2": {"limit": 50, "tier": "pro"}},
            "defaultVariant": "v1",
            "targeting": {"if": [{"in": [{"var": "plan"}, ["pro", "team"]]}, "v2", "v1"]},
        },
    },
}

# The variant each override forces: never the flag's default, so that it shows. (A rollout
# buckets over the same implicit key as the flag's own fractional, so for "split" the rollout
# of "a" covers the users its fractional gives "a": "c" would be all of them at 50%.)
FORCED = {
    "targeted": "on",
    "split": "a",
    "static": "large",
    "no-default": "x",
    "disabled": "off",
    "broken": "on",
    "object": "v2",
}

OVERRIDES = {
    "kill-to-variant": lambda v: Override(OverrideKind.KILL, v),
    "kill": lambda v: Override(OverrideKind.KILL),
    "rollout-0": lambda v: Override(OverrideKind.ROLLOUT, v, 0),
    "rollout-12.5": lambda v: Override(OverrideKind.ROLLOUT, v, 12.5),
    "rollout-50": lambda v: Override(OverrideKind.ROLLOUT, v, 50),
    "rollout-99.99": lambda v: Override(OverrideKind.ROLLOUT, v, 99.99),
    "rollout-100": lambda v: Override(OverrideKind.ROLLOUT, v, 100),
}

# Where flagd JSON cannot say what the edge says (rendering.py's table): the edge's reason,
# then the reason an in-process evaluator gives for the same value and variant.
TRANSLATED = {
    ("kill-to-variant", "DISABLED"): "STATIC",
    ("rollout", "STATIC"): "DEFAULT",
    ("rollout", "DISABLED"): "DEFAULT",
}


def contexts() -> Iterator[dict[str, Any]]:
    plans = ("free", "pro", "team")
    for i in range(240):
        ctx: dict[str, Any] = {"targetingKey": f"user-{i}", "plan": plans[i % 3]}
        if i % 4 == 0:
            ctx["email"] = f"u{i}@flagedge.dev"
        yield ctx
    yield {}  # no targeting key: never in a rollout
    yield {"targetingKey": ""}
    yield {"plan": "pro", "email": "boss@flagedge.dev"}


@pytest.mark.parametrize("scheme", ["v3", "v2"])
@pytest.mark.parametrize("name", list(OVERRIDES))
def test_every_override_reaches_the_in_process_evaluator_as_the_edge_answers_it(
    name: str, scheme: str
) -> None:
    base = Snapshot.build(DOC, fractional=scheme)
    snap = base.with_overrides({k: OVERRIDES[name](v) for k, v in FORCED.items()}, version=2)
    core = reference_fed(snap)
    forced_seen = dict.fromkeys(FORCED, 0)
    with scheme_of(scheme):
        for key in DOC["flags"]:
            kind = infer_type(DOC, key)
            for ctx in contexts():
                edge = edge_answer(snap, key, ctx, kind, NOW)
                ref = reference_answer(core, key, ctx, kind)
                label = f"{name} {scheme} {key} {ctx}: in-process {ref} != edge {edge}"
                assert ref["variant"] == edge["variant"], label
                assert ref["errorCode"] == edge["errorCode"], label
                assert same_json(ref["value"], edge["value"]), label
                family = "rollout" if name.startswith("rollout") else name
                wanted = TRANSLATED.get((family, edge["reason"]), edge["reason"])
                assert ref["reason"] == wanted, label
                if edge["errorCode"] is None:
                    assert same_json(ref["metadata"], edge["metadata"]), label
                if ctx.get("targetingKey") and edge["variant"] == FORCED[key]:
                    forced_seen[key] += 1
    keys = 240
    if name == "rollout-50":  # a real split: some keys in, some out, for every flag
        assert all(0 < n < keys for n in forced_seen.values()), forced_seen
    if name in ("rollout-100", "kill-to-variant"):
        assert all(n == keys for n in forced_seen.values()), forced_seen


def test_a_rollout_buckets_the_same_users_as_the_edge_whatever_the_percentage() -> None:
    doc = {"flags": {"f": {"state": "ENABLED", "variants": {"on": True, "off": False}}}}
    doc["flags"]["f"]["defaultVariant"] = "off"
    ctxs = [{"targetingKey": f"k{i}"} for i in range(400)]
    for percent in (0.01, 1, 7.25, 33.33, 66.67, 90):
        snap = Snapshot.build(doc).with_overrides(
            {"f": Override(OverrideKind.ROLLOUT, "on", percent)}, version=2
        )
        core = reference_fed(snap)
        edge_in = [edge_answer(snap, "f", c, "boolean", NOW)["value"] for c in ctxs]
        ref_in = [reference_answer(core, "f", c, "boolean")["value"] for c in ctxs]
        assert ref_in == edge_in, percent


# -- what flagd sends ------------------------------------------------------------------------


def rendered(snap: Snapshot, source: str | None = "flags.json") -> dict[str, Any]:
    out: dict[str, Any] = json.loads(Renderings(source, {}).get(snap, ALL).text)
    return out


def test_each_flag_is_sent_as_flagd_sends_it() -> None:
    doc = json.loads(json.dumps(DOC))
    doc["flags"]["null-default"] = {
        "state": "ENABLED",
        "variants": {"x": 1},
        "defaultVariant": None,
        "targeting": {},
    }
    out = rendered(Snapshot.build(doc))
    assert set(out) == {"flags"}  # no $evaluators, no top-level metadata
    flags = out["flags"]
    assert list(flags) == list(doc["flags"])
    assert flags["targeted"] == {
        "state": "ENABLED",
        "defaultVariant": "off",
        "variants": {"on": True, "off": False},
        # the evaluator substituted; flag-set metadata merged in, the flag's own winning
        "targeting": {"if": [{"ends_with": [{"var": "email"}, "@flagedge.dev"]}, "on", None]},
        "source": "flags.json",
        "metadata": {"flagSetId": "shop", "team": "growth"},
    }
    assert flags["no-default"]["defaultVariant"] == ""
    assert flags["null-default"]["defaultVariant"] == ""
    assert "targeting" not in flags["null-default"]  # {} is no targeting
    assert "targeting" not in flags["static"]
    assert flags["disabled"]["state"] == "DISABLED"
    assert flags["broken"]["targeting"] == {"no_such_operator": [1]}  # fails there too


def test_a_kill_switch_is_written_into_the_flag() -> None:
    snap = Snapshot.build(DOC).with_overrides(
        {
            "targeted": Override(OverrideKind.KILL, "on"),
            "disabled": Override(OverrideKind.KILL, "off"),
            "split": Override(OverrideKind.KILL),
        },
        version=2,
    )
    flags = rendered(snap)["flags"]
    assert flags["targeted"]["defaultVariant"] == "on" and "targeting" not in flags["targeted"]
    # A kill to a variant decides even for a disabled flag.
    assert (flags["disabled"]["state"], flags["disabled"]["defaultVariant"]) == ("ENABLED", "off")
    assert flags["split"]["state"] == "DISABLED"
    assert flags["split"]["targeting"] == DOC["flags"]["split"]["targeting"]


def test_a_rollout_is_a_fractional_in_basis_points_over_the_definition() -> None:
    snap = Snapshot.build(DOC).with_overrides(
        {
            "targeted": Override(OverrideKind.ROLLOUT, "on", 12.5),
            "static": Override(OverrideKind.ROLLOUT, "large", 50),
            "disabled": Override(OverrideKind.ROLLOUT, "off", 5),
        },
        version=2,
    )
    flags = rendered(snap)["flags"]
    fractional = {"fractional": [["in", 1250], ["out", 8750]]}
    assert flags["targeted"]["targeting"] == {
        "if": [
            {"==": [fractional, "in"]},
            "on",
            {"if": [{"ends_with": [{"var": "email"}, "@flagedge.dev"]}, "on", None]},
        ]
    }
    assert flags["static"]["targeting"]["if"][2] is None  # the default variant decides
    assert flags["disabled"]["state"] == "ENABLED"  # the rollout decides first...
    assert flags["disabled"]["defaultVariant"] == ""  # ...and outside it: the caller's default
    assert flags["disabled"]["targeting"]["if"][2] is None


def test_a_flag_without_a_source_name_says_so_with_an_empty_string() -> None:
    snap = Snapshot.build(DOC)
    assert render_flag(snap.flags["static"], None)["source"] == ""
    assert render_document(snap.flags.values(), "x")["flags"]["static"]["source"] == "x"


def test_a_selector_sends_only_the_flags_it_names() -> None:
    doc = json.loads(json.dumps(DOC))
    doc["flags"]["static"]["metadata"] = {"flagSetId": "other"}
    snap = Snapshot.build(doc)
    renderings = Renderings("flags.json", {})
    other = json.loads(renderings.get(snap, parse_selector("flagSetId=other")).text)
    assert list(other["flags"]) == ["static"]
    shop = json.loads(renderings.get(snap, parse_selector("flagSetId=shop")).text)
    assert "static" not in shop["flags"] and len(shop["flags"]) == len(doc["flags"]) - 1
    assert json.loads(renderings.get(snap, parse_selector("flags.json")).text) == rendered(snap)
    assert json.loads(renderings.get(snap, parse_selector("elsewhere.json")).text) == {"flags": {}}


def test_a_snapshot_is_rendered_once_and_a_kill_re_renders_one_flag() -> None:
    renderings = Renderings("flags.json", {})
    snap = Snapshot.build(DOC)
    first = renderings.get(snap, ALL)
    assert renderings.get(snap, ALL) is first
    fragments = dict(renderings._fragments)
    killed = snap.with_overrides({"split": Override(OverrideKind.KILL)}, version=2)
    second = renderings.get(killed, ALL)
    assert second is not first
    assert json.loads(second.text)["flags"]["split"]["state"] == "DISABLED"
    kept = [k for k in DOC["flags"] if renderings._fragments[k][1] is fragments[k][1]]
    assert kept == [k for k in DOC["flags"] if k != "split"]


def test_values_orjson_cannot_write_are_still_sent() -> None:
    doc = {
        "flags": {
            "huge": {
                "state": "ENABLED",
                "variants": {"big": {"n": 2**70}, "small": {"n": 1}},
                "defaultVariant": "big",
            }
        }
    }
    out = rendered(Snapshot.build(doc))
    assert out["flags"]["huge"]["variants"]["big"] == {"n": 2**70}


def test_selectors_a_caller_invents_are_answered_but_not_all_remembered() -> None:
    renderings = Renderings("flags.json", {})
    snap = Snapshot.build(DOC)
    for i in range(MAX_SELECTIONS * 3):
        text = renderings.get(snap, parse_selector(f"flagSetId=set-{i}")).text
        assert json.loads(text) == {"flags": {}}
    assert len(renderings._by_selection) == MAX_SELECTIONS
    shop = json.loads(renderings.get(snap, parse_selector("flagSetId=shop")).text)
    assert set(shop["flags"]) == set(DOC["flags"])
