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
from flagedge.store.writes import plan_rollout, validate
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
