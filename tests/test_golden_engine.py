"""Every golden case (tests/golden/*.json) against flagedge's engine.

The golden expectations describe flagd 0.16 (evaluation.v2), so every case applies here,
including those the reference evaluator is known to disagree with ("skip: ..." in the
file, checked against the reference in test_golden_reference.py) and the v2 bucketing
cases.
"""

from __future__ import annotations

from typing import Any

import pytest
from golden_cases import load_cases, load_hash_vectors

from flagedge.hashing import hash_v2
from flagedge.model import FlagType, Resolution
from flagedge.snapshot import Snapshot

_CASES = load_cases()
_DEFAULT_NOW = 1_700_000_000


def _params() -> list[Any]:
    out = []
    seen: dict[str, int] = {}
    for stem, case, doc in _CASES:
        name = f"{stem}:{case['name']}"
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}#{seen[name]}"
        out.append(pytest.param(case, doc, id=name))
    return out


def same_json(a: Any, b: Any) -> bool:
    """JSON equality: booleans only equal booleans (by identity), numbers compare by ==."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def evaluate_case(case: dict[str, Any], doc: dict[str, Any]) -> Resolution:
    snap = Snapshot.build(doc, fractional=case.get("fractional", "v3"))
    flag_type = FlagType(case["type"]) if case.get("type") else None
    return snap.evaluate(
        case["flag"], dict(case.get("context") or {}), case.get("now", _DEFAULT_NOW), flag_type
    )


@pytest.mark.parametrize(("case", "doc"), _params())
def test_golden_case(case: dict[str, Any], doc: dict[str, Any]) -> None:
    expect = case["expect"]
    got = evaluate_case(case, doc)
    label = case["name"]
    assert str(got.reason) == expect["reason"], f"{label}: reason {got}"
    code = None if got.error_code is None else str(got.error_code)
    assert code == expect.get("errorCode"), f"{label}: errorCode {got}"
    assert got.variant == expect.get("variant"), f"{label}: variant {got}"
    assert same_json(got.value, expect.get("value")), f"{label}: value {got.value!r}"
    if case.get("type") == "float" and got.value is not None:
        assert isinstance(got.value, float), f"{label}: float value {got.value!r}"
    if case.get("type") == "integer" and got.value is not None:
        assert isinstance(got.value, int) and not isinstance(got.value, bool), label
    if "metadata" in expect:
        assert same_json(dict(got.metadata), expect["metadata"]), f"{label}: {got.metadata}"


def test_golden_cases_cover_every_file() -> None:
    stems = {stem for stem, _, _ in _CASES}
    assert len(_CASES) >= 150
    wanted = {"results_table", "fractional", "testbed_fractional_v2", "testbed_fractional_v3"}
    assert wanted <= stems


def test_same_json_is_strict_about_booleans() -> None:
    assert same_json(1, 1.0) and same_json({"a": [True]}, {"a": [True]})
    assert not same_json(True, 1) and not same_json(0, False) and not same_json([1], [True])


VECTORS = load_hash_vectors()["murmur3_v2"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["input"] for v in VECTORS])
def test_murmur3_vector(vector: dict[str, Any]) -> None:
    assert hash_v2(vector["input"]) == vector["hash"]


def test_there_are_five_murmur3_vectors() -> None:
    assert len(VECTORS) == 5
    assert {v["hash"] for v in VECTORS} == {0, 1, 2**31 - 1, 2**31, 2**32 - 1}
