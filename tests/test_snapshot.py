"""Snapshots (flagedge.snapshot): immutable and versioned; the holder swaps them and never
goes back; overrides (kill switches, rollouts) apply without a recompile, as the Override
docstring says, and removing one restores the original answers."""

from __future__ import annotations

import copy
import gc
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flagedge.errors import DefinitionError
from flagedge.model import Override, OverrideKind, Reason
from flagedge.snapshot import Snapshot, SnapshotHolder
from tests.support.grammar import context as flagd_context
from tests.support.grammar import document as flagd_document
from tests.support.hostile import FAST

NOW = 1_700_000_000


def doc(default: str = "off", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    flags: dict[str, Any] = {
        "checkout": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": default,
            "targeting": {"if": [{"==": [{"var": "plan"}, "premium"]}, "on", None]},
        },
        "static": {"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": "a"},
    }
    flags.update(extra or {})
    return {"flags": flags}


def test_a_killed_flag_resolves_disabled_with_no_value() -> None:
    snap = Snapshot.build(doc()).with_overrides({"checkout": Override(OverrideKind.KILL)}, 2)
    res = snap.evaluate("checkout", {"plan": "premium"}, NOW)
    assert res.reason is Reason.DISABLED and res.value is None and res.variant is None


def test_a_kill_to_a_variant_serves_that_variant_with_reason_disabled() -> None:
    snap = Snapshot.build(doc()).with_overrides(
        {"static": Override(OverrideKind.KILL, variant="b")}, 2
    )
    res = snap.evaluate("static", {}, NOW)
    assert (res.value, res.variant, res.reason) == ("B", "b", Reason.DISABLED)
    batch = snap.evaluate_batch(["static"], [{}], NOW)
    assert batch.cell(0, 0)[:2] == ("b", "B")


def test_removing_an_override_restores_the_definition() -> None:
    base = Snapshot.build(doc())
    killed = base.with_overrides({"checkout": Override(OverrideKind.KILL)}, 2)
    restored = killed.with_overrides({"checkout": None}, 3)
    ctx = {"plan": "premium"}
    assert restored.evaluate("checkout", ctx, NOW) == base.evaluate("checkout", ctx, NOW)
    assert restored.overrides == {}


def test_overrides_leave_the_original_snapshot_untouched() -> None:
    base = Snapshot.build(doc(), version=1)
    base.with_overrides({"static": Override(OverrideKind.KILL)}, 2)
    assert base.evaluate("static", {}, NOW).reason is Reason.STATIC
    assert base.version == 1 and not base.overrides


def test_pushing_new_definitions_keeps_a_kill() -> None:
    killed = Snapshot.build(doc()).with_overrides({"checkout": Override(OverrideKind.KILL)}, 2)
    pushed = killed.with_document(doc(default="on"), 3)
    assert pushed.evaluate("checkout", {}, NOW).reason is Reason.DISABLED
    assert pushed.version == 3


def test_a_rollout_override_serves_its_variant_to_about_that_share_of_users() -> None:
    snap = Snapshot.build(doc()).with_overrides(
        {"checkout": Override(OverrideKind.ROLLOUT, variant="on", percent=25)}, 2
    )
    users = [{"targetingKey": f"user-{i}"} for i in range(4000)]
    on = sum(snap.evaluate("checkout", u, NOW).value is True for u in users)
    assert 0.21 < on / len(users) < 0.29
    # The same user keeps the same answer, and a wider rollout only adds users.
    wider = snap.with_overrides(
        {"checkout": Override(OverrideKind.ROLLOUT, variant="on", percent=50)}, 3
    )
    for u in users[:500]:
        if snap.evaluate("checkout", u, NOW).value is True:
            assert wider.evaluate("checkout", u, NOW).value is True


def test_an_override_naming_an_unknown_variant_is_refused_with_its_path() -> None:
    snap = Snapshot.build(doc())
    with pytest.raises(DefinitionError) as err:
        snap.with_overrides({"checkout": Override(OverrideKind.KILL, variant="blue")}, 2)
    assert (
        str(err.value.problems[0])
        == 'overrides.checkout.variant: "blue" is not a variant (on, off)'
    )


def test_changed_keys_names_exactly_the_flags_that_differ() -> None:
    old = Snapshot.build(doc(), version=1)
    new = Snapshot.build(
        doc(extra={"new": {"state": "ENABLED", "variants": {"x": 1}, "defaultVariant": "x"}}),
        version=2,
    )
    assert new.changed_keys(old) == {"new"}
    killed = new.with_overrides({"static": Override(OverrideKind.KILL)}, 3)
    assert killed.changed_keys(new) == {"static"}


def test_the_holder_never_installs_an_older_version() -> None:
    holder = SnapshotHolder(Snapshot.build(doc(), version=5))
    seen: list[tuple[int, frozenset[str]]] = []
    holder.subscribe(lambda snap, keys: seen.append((snap.version, keys)))
    assert holder.install(Snapshot.build(doc(default="on"), version=4)) == frozenset()
    assert holder.current is not None and holder.current.version == 5
    changed = holder.install(Snapshot.build(doc(default="on"), version=6))
    assert changed == {"checkout"}
    assert seen == [(6, frozenset({"checkout"}))]


def test_unsubscribed_listeners_hear_nothing() -> None:
    holder = SnapshotHolder()
    heard: list[int] = []
    stop = holder.subscribe(lambda snap, keys: heard.append(snap.version))
    holder.install(Snapshot.build(doc(), version=1))
    stop()
    holder.install(Snapshot.build(doc(), version=2))
    assert heard == [1]


def test_a_snapshot_built_with_overrides_keeps_those_for_absent_flags_until_they_return() -> None:
    gone = {"state": "ENABLED", "variants": {"x": 1, "y": 2}, "defaultVariant": "x"}
    kills = {"checkout": Override(OverrideKind.KILL), "gone": Override(OverrideKind.KILL, "y")}
    snap = Snapshot.build(doc(), overrides=kills, version=3)
    assert snap.evaluate("checkout", {"plan": "premium"}, NOW).reason is Reason.DISABLED
    assert set(snap.overrides) == {"checkout", "gone"}
    back = snap.with_document(doc(extra={"gone": gone}), 4)
    res = back.evaluate("gone", {}, NOW)
    assert (res.value, res.variant, res.reason) == (2, "y", Reason.DISABLED)
    # Removing the override of a flag that is not there forgets it.
    assert "gone" not in snap.with_overrides({"gone": None}, 4).overrides


def test_a_snapshot_built_with_an_override_that_cannot_apply_is_refused() -> None:
    with pytest.raises(DefinitionError) as err:
        Snapshot.build(doc(), overrides={"static": Override(OverrideKind.KILL, variant="z")})
    assert [str(p) for p in err.value.problems] == [
        'overrides.static.variant: "z" is not a variant (a, b)'
    ]
    with pytest.raises(DefinitionError, match='no flag named "gone"'):
        Snapshot.build(doc()).with_overrides({"gone": Override(OverrideKind.KILL)}, 2)


def test_a_snapshot_says_what_it_holds() -> None:
    snap = Snapshot.build(doc(), version=7).with_overrides(
        {"static": Override(OverrideKind.KILL)}, 8
    )
    assert repr(snap) == "<Snapshot v8 flags=2 overrides=1 scheme=v3>"


def test_building_a_snapshot_leaves_the_garbage_collector_as_it_found_it() -> None:
    was = gc.isenabled()
    try:
        gc.disable()
        Snapshot.build(doc())
        assert not gc.isenabled()
        gc.enable()
        Snapshot.build(doc())
        assert gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()


def test_unsubscribing_twice_is_harmless() -> None:
    holder = SnapshotHolder()
    heard: list[int] = []
    stop = holder.subscribe(lambda snap, keys: heard.append(snap.version))
    stop()
    stop()
    holder.install(Snapshot.build(doc(), version=1))
    assert heard == []


# -- overrides, for any document of the grammar ----------------------------------------------

override_contexts = st.lists(
    st.one_of(
        flagd_context,
        st.builds(
            lambda tk, c: {**c, "targetingKey": tk}, st.text(min_size=1, max_size=8), flagd_context
        ),
    ),
    min_size=1,
    max_size=4,
)


def _snapshot_of(case: tuple[dict[str, Any], str, str]) -> Snapshot:
    return Snapshot.build(copy.deepcopy(case[0]))


def _answers(snap: Snapshot, contexts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [snap.evaluate(k, ctx, NOW).to_json() for k in snap.keys for ctx in contexts]


@FAST
@given(case=flagd_document(), contexts=override_contexts, data=st.data())
def test_overrides_follow_their_documented_semantics(
    case: tuple[dict[str, Any], str, str], contexts: list[dict[str, Any]], data: st.DataObject
) -> None:
    snap = _snapshot_of(case)
    key = data.draw(st.sampled_from(snap.keys))
    flag = snap.flags[key]
    variant = data.draw(st.sampled_from(flag.variant_names))
    original = _answers(snap, contexts)

    killed = snap.with_overrides({key: Override(OverrideKind.KILL)}, version=1)
    forced = snap.with_overrides({key: Override(OverrideKind.KILL, variant=variant)}, version=2)
    assert killed.version == 1 and forced.version == 2
    for ctx in contexts:
        res = killed.evaluate(key, ctx, NOW)
        assert (res.value, res.variant, res.reason, res.error_code) == (
            None,
            None,
            Reason.DISABLED,
            None,
        )
        res = forced.evaluate(key, ctx, NOW)
        assert (res.variant, res.reason, res.error_code) == (variant, Reason.DISABLED, None)
        assert res.value == flag.variants[variant]
        # Other flags are untouched.
        for other in snap.keys:
            if other != key:
                assert killed.evaluate(other, ctx, NOW) == snap.evaluate(other, ctx, NOW)

    # ROLLOUT: for keyed contexts, either the rolled-out variant or the flag as defined.
    percent = data.draw(st.sampled_from([0.0, 12.5, 50.0, 99.0]))
    rolled = snap.with_overrides(
        {key: Override(OverrideKind.ROLLOUT, variant=variant, percent=percent)}, version=3
    )
    for ctx in contexts:
        base = snap.evaluate(key, ctx, NOW)
        res = rolled.evaluate(key, ctx, NOW)
        tk = ctx.get("targetingKey")
        if percent == 0.0 or not (isinstance(tk, str) and tk):
            assert res == base, (ctx, res, base)
        else:
            assert res == base or (
                res.variant == variant and res.reason is Reason.TARGETING_MATCH
            ), (ctx, res, base)
        assert rolled.evaluate(key, ctx, NOW) == res  # stable
    full = snap.with_overrides(
        {key: Override(OverrideKind.ROLLOUT, variant=variant, percent=100.0)}, version=4
    )
    for ctx in contexts:
        if isinstance(ctx.get("targetingKey"), str) and ctx["targetingKey"]:
            res = full.evaluate(key, ctx, NOW)
            assert (res.variant, res.reason) == (variant, Reason.TARGETING_MATCH)

    # Removing the override restores every answer.
    for changed in (killed, forced, rolled, full):
        restored = changed.with_overrides({key: None}, version=9)
        assert key not in restored.overrides
        assert _answers(restored, contexts) == original


def test_rollout_percentage_is_respected() -> None:
    doc = {
        "flags": {
            "f": {"state": "ENABLED", "variants": {"old": "o", "new": "n"}, "defaultVariant": "old"}
        }
    }
    snap = Snapshot.build(doc).with_overrides(
        {"f": Override(OverrideKind.ROLLOUT, variant="new", percent=30.0)}, version=1
    )
    hits = sum(
        snap.evaluate("f", {"targetingKey": f"user-{i}"}, NOW).variant == "new" for i in range(2000)
    )
    assert 500 <= hits <= 700, hits  # 600 expected; 5 sigma is about 100


@pytest.mark.parametrize("ctx", [{}, {"targetingKey": ""}, {"targetingKey": None}])
def test_full_rollout_still_needs_a_targeting_key(ctx: dict[str, Any]) -> None:
    doc = {
        "flags": {
            "f": {"state": "ENABLED", "variants": {"old": "o", "new": "n"}, "defaultVariant": "old"}
        }
    }
    snap = Snapshot.build(doc)
    answers = {}
    for percent in (99.99, 100.0):
        rolled = snap.with_overrides(
            {"f": Override(OverrideKind.ROLLOUT, variant="new", percent=percent)}, version=1
        )
        answers[percent] = rolled.evaluate("f", ctx, NOW)
    # Below 100% an unkeyed context is evaluated as defined (STATIC "old") ...
    assert answers[99.99] == snap.evaluate("f", ctx, NOW)
    # ... and at 100% too: a rollout covers targeting keys only.
    assert answers[100.0] == snap.evaluate("f", ctx, NOW)


def test_override_for_unknown_variant_is_refused() -> None:
    doc = {"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}}}
    snap = Snapshot.build(doc)
    with pytest.raises(DefinitionError):
        snap.with_overrides({"f": Override(OverrideKind.KILL, variant="nope")}, version=1)
    with pytest.raises(DefinitionError):
        snap.with_overrides({"f": Override(OverrideKind.ROLLOUT, variant="a", percent=101)}, 1)
