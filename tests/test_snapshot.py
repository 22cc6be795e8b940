"""Snapshots are immutable and versioned; the holder swaps them; overrides need no recompile."""

from __future__ import annotations

from typing import Any

import pytest

from flagedge.errors import DefinitionError
from flagedge.model import Override, OverrideKind, Reason
from flagedge.snapshot import Snapshot, SnapshotHolder

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


def test_a_bad_rule_disables_one_flag_not_the_set() -> None:
    snap = Snapshot.build(
        doc(
            extra={
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


def test_a_hostile_nesting_depth_disables_that_flag_only() -> None:
    deep: Any = {"var": "x"}
    for _ in range(5000):
        deep = {"!": [deep]}
    shallow: Any = {"var": "x"}
    for _ in range(100):  # 100 negations: within the limit, and x itself comes back
        shallow = {"!": [shallow]}
    snap = Snapshot.build(
        doc(
            extra={
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
