"""Bucketing (flagedge.hashing): murmur3 as the golden vectors pin it, and a fractional
split that gives each bucket its share of users and each user the same bucket every time."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flagedge.hashing import hash_v2
from flagedge.model import Reason
from flagedge.snapshot import Snapshot
from tests.support.golden import load_hash_vectors

NOW = 1_700_000_000
VECTORS = load_hash_vectors()["murmur3_v2"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["input"] for v in VECTORS])
def test_murmur3_vector(vector: dict[str, Any]) -> None:
    assert hash_v2(vector["input"]) == vector["hash"]


def test_there_are_five_murmur3_vectors() -> None:
    assert len(VECTORS) == 5
    assert {v["hash"] for v in VECTORS} == {0, 1, 2**31 - 1, 2**31, 2**32 - 1}


def test_murmur3_hash_vectors() -> None:
    """The vectors themselves: the mmh3 library gives the same hashes."""
    mmh3 = pytest.importorskip("mmh3")
    vectors = load_hash_vectors()
    assert vectors["murmur3_v2"]
    for vec in vectors["murmur3_v2"]:
        assert mmh3.hash(vec["input"].encode("utf-8"), signed=False) == vec["hash"], vec


@settings(max_examples=5, deadline=None)
@given(prefix=st.text(min_size=0, max_size=6), flag_key=st.text(min_size=1, max_size=8))
def test_fractional_v3_split_and_stability(prefix: str, flag_key: str) -> None:
    doc = {
        "flags": {
            flag_key: {
                "state": "ENABLED",
                "variants": {"small": "s", "large": "l"},
                "defaultVariant": "small",
                "targeting": {"fractional": [["small", 25], ["large", 75]]},
            }
        }
    }
    snap = Snapshot.build(doc)
    again = Snapshot.build(copy.deepcopy(doc))
    keys = [f"{prefix}{i}" for i in range(2000)]
    got = [snap.evaluate(flag_key, {"targetingKey": k}, NOW) for k in keys]
    assert all(r.reason is Reason.TARGETING_MATCH for r in got)
    small = sum(r.variant == "small" for r in got)
    assert 400 <= small <= 600, small  # 500 expected; sigma is about 19
    # Stable: the same key gets the same variant, in this snapshot and in a rebuilt one.
    for k, r in zip(keys[:300], got[:300], strict=True):
        assert snap.evaluate(flag_key, {"targetingKey": k}, NOW).variant == r.variant
        assert again.evaluate(flag_key, {"targetingKey": k, "other": 1}, NOW).variant == r.variant
    # No targeting key: no bucket, the default variant.
    res = snap.evaluate(flag_key, {}, NOW)
    assert (res.variant, res.reason) == ("small", Reason.DEFAULT)
