"""The one write path (flagedge.store.writes): each change is planned purely against the
state read, then validated with the real engine before anything is written. A rollout on a
two-bucket split rewrites its weights; elsewhere it becomes an override; bad input is
refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flagedge.errors import Refusal as _Refused
from flagedge.model import Override, OverrideKind
from flagedge.store.plane import ChangeKind, RawState
from flagedge.store.writes import plan_override, plan_push, plan_rollout, validate
from tests.support.documents import document


def _raw(doc: dict[str, Any], overrides: dict[str, bytes] | None = None) -> RawState:
    return RawState(4, json.dumps(doc).encode(), overrides or {})


def test_a_rollout_on_a_two_bucket_split_rewrites_its_weights() -> None:
    doc = document(exp="off")
    doc["flags"]["exp"]["targeting"] = {"fractional": [["on", 5], ["off", 95]]}
    plan = plan_rollout(_raw(doc), "exp", 25, None, "me", 0)
    assert plan.write.kind is ChangeKind.DEFINITIONS and plan.write.expected == 4
    rewritten = json.loads(plan.write.definitions)["flags"]["exp"]["targeting"]
    assert rewritten == {"fractional": [["on", 25], ["off", 75]]}
    validate(plan)
    plan = plan_rollout(_raw(doc), "exp", 12.5, None, "me", 0)
    rewritten = json.loads(plan.write.definitions)["flags"]["exp"]["targeting"]
    assert rewritten == {"fractional": [["on", 1250], ["off", 8750]]}


def test_a_rollout_elsewhere_becomes_an_override_and_bad_input_is_refused() -> None:
    doc = document(plain="off")
    plan = plan_rollout(_raw(doc), "plain", 5, None, "me", 0)
    assert plan.write.override == Override(OverrideKind.ROLLOUT, "on", 5)
    validate(plan)
    with pytest.raises(_Refused, match="no flag named"):
        plan_rollout(_raw(doc), "missing", 5, None, "me", 0)
    with pytest.raises(_Refused, match="not a variant"):
        plan_rollout(_raw(doc), "plain", 5, "maybe", "me", 0)


def test_a_kill_goes_through_while_another_flag_has_a_soft_problem_but_a_push_does_not() -> None:
    doc = document(target="off", broken="off")
    doc["flags"]["broken"]["targeting"] = {"no_such_operator": [1]}  # disables that flag only
    kill = plan_override(_raw(doc), "target", Override(OverrideKind.KILL), "kill", "me", 0)
    assert validate(kill).flags["target"].override == Override(OverrideKind.KILL)
    with pytest.raises(_Refused, match="invalid state") as refused:
        bad = Override(OverrideKind.KILL, "purple")
        validate(plan_override(_raw(doc), "target", bad, "kill", "me", 0))
    assert [p.path for p in refused.value.problems] == ["overrides.target.variant"]
    push = plan_push(_raw(document(a="on")), json.dumps(doc).encode(), "me", 0)
    with pytest.raises(_Refused, match="problems") as refused:
        validate(push)
    assert [p.path for p in refused.value.problems] == ["flags.broken.targeting"]
