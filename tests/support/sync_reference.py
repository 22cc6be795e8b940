"""The reference in-process evaluator (openfeature-flagd-core, which the Python in-process
provider runs) as the oracle for the sync service: feed it the flagd JSON flagedge sends,
ask it what the edge is asked, and compare the two answers as plain dicts (the reference's
side is tests/support/reference.py's, v2 bucketing included).
"""

from __future__ import annotations

import time
from typing import Any

from openfeature.contrib.tools.flagd.core import FlagdCore

from flagedge.model import FlagType
from flagedge.snapshot import Snapshot
from tests.support.golden import load_cases
from tests.support.reference import answer


def reference_answer(core: FlagdCore, key: str, context: dict[str, Any], kind: str) -> dict:
    """What ``core`` (fed the edge's flagd JSON) answers; an unexpected exception is raised."""
    return answer(core, key, context, kind)


def edge_answer(snap: Snapshot, key: str, context: dict[str, Any], kind: str, now: int) -> dict:
    r = snap.evaluate(key, dict(context), now, FlagType(kind))
    if r.error_code is not None:
        return {"value": None, "variant": None, "reason": "ERROR", "errorCode": str(r.error_code)}
    return {
        "value": r.value,
        "variant": r.variant,
        "reason": str(r.reason),
        "errorCode": None,
        "metadata": dict(r.metadata),
    }


def golden_groups() -> list[tuple[str, str, dict[str, Any], list[dict[str, Any]]]]:
    """(file stem, scheme, document, cases) for every golden case the reference agrees with
    flagd on ("reference": "agree"), and every v2 case (the reference then buckets with v2:
    ``reference.v2_bucketing``), grouped so that each document is served once per scheme."""
    groups: dict[tuple[str, str], tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for stem, case, doc in load_cases():
        scheme = case.get("fractional", "v3")
        if case.get("reference", "agree") != "agree" and scheme != "v2":
            continue
        groups.setdefault((stem, scheme), (doc, []))[1].append(case)
    return [(stem, scheme, doc, cases) for (stem, scheme), (doc, cases) in groups.items()]


def case_now(case: dict[str, Any]) -> int:
    # The reference reads the clock itself; the cases it agrees on do not depend on it.
    return int(case.get("now") or time.time())
