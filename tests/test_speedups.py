"""The optional C speed-ups give exactly the answers of the pure-Python paths."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flagedge import engine, hashing
from flagedge._accel import speedups
from flagedge.model import FlagType
from flagedge.snapshot import Snapshot
from tests.support.golden import load_cases

pytestmark = pytest.mark.skipif(speedups is None, reason="built without a C compiler")
NOW = 1_700_000_000


@settings(max_examples=500, deadline=None)
@given(flag_key=st.text(max_size=40), tk=st.text(max_size=300))
def test_the_c_v3_hash_equals_the_python_one(flag_key: str, tk: str) -> None:
    assert speedups is not None
    prefix = hashing.v3_pair_prefix(flag_key)
    got = speedups.v3_pair(prefix, tk)
    if tk == "":
        assert got is None
    else:
        assert got == hashing.murmur3_32(prefix + hashing.cbor_text(tk))
        assert got == hashing.hash_v3([flag_key, tk])


@pytest.mark.parametrize("tk", [None, 7, 1.5, True, ["a"], {"a": 1}, ""])
def test_the_c_v3_hash_refuses_what_is_not_a_non_empty_string(tk: Any) -> None:
    assert speedups is not None
    assert speedups.v3_pair(b"\x82\x61f", tk) is None


def test_long_targeting_keys_hash_like_python() -> None:
    assert speedups is not None
    prefix = hashing.v3_pair_prefix("flag")
    for n in (23, 24, 255, 256, 511, 512, 65_535, 65_536, 100_000):
        tk = "é" * (n // 2) + "x" * (n % 2)
        assert speedups.v3_pair(prefix, tk) == hashing.hash_v3(["flag", tk])


def _cases() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [c for c in load_cases() if c[1].get("fractional", "v3") == "v3"]


def test_the_c_evaluate_answers_every_golden_case_like_python() -> None:
    checked = 0
    for _stem, case, doc in _cases():
        snap = Snapshot.build(doc)
        python = engine._python_evaluator(snap.flags)
        flag_type = FlagType(case["type"]) if case.get("type") else None
        ctx = case.get("context", {})
        now = case.get("now", NOW)
        assert snap.evaluate(case["flag"], ctx, now, flag_type) == python(
            case["flag"], ctx, now, flag_type
        )
        assert snap.evaluate(case["flag"], ctx, now, flag_type=flag_type) == python(
            case["flag"], ctx, now, flag_type
        )
        checked += 1
    assert checked > 300


def test_the_c_evaluate_rejects_bad_calls_clearly() -> None:
    snap = Snapshot.build({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}}}})
    with pytest.raises(TypeError):
        snap.evaluate("f", {}, NOW, nonsense=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        snap.evaluate("f", {})  # type: ignore[call-arg]
    assert snap.evaluate("missing", {}, NOW).error_code is not None


def test_the_pure_python_paths_pass_the_golden_cases_too() -> None:
    """CI has a compiler, so the pure path would otherwise go untested."""
    root = Path(__file__).resolve().parent.parent
    # The core's specifications, with fewer hypothesis examples than here: the golden cases
    # are what must pass; the properties only look for a pure-path crash.
    env = dict(os.environ, FLAGEDGE_PURE_PYTHON="1", FLAGEDGE_PROP_EXAMPLES="10")
    out = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *("tests/test_engine.py", "tests/test_snapshot.py", "tests/test_definitions.py"),
            "tests/test_hashing.py",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "from flagedge._accel import speedups; print(speedups)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert probe.stdout.strip() == "None"  # the run above really was pure Python


@settings(max_examples=400, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=6).filter(
        lambda ws: sum(ws) > 0
    ),
    tk=st.text(min_size=1, max_size=60),
)
def test_a_compiled_fractional_picks_the_bucket_the_formula_picks(
    weights: list[int], tk: str
) -> None:
    """The C threshold walk agrees with flagd's (h * total) >> 32 against running sums."""
    names = [f"v{i}" for i in range(len(weights))]
    doc = {
        "flags": {
            "f": {
                "state": "ENABLED",
                "variants": {n: n for n in names},
                "defaultVariant": names[0],
                "targeting": {"fractional": [[n, w] for n, w in zip(names, weights, strict=True)]},
            }
        }
    }
    got = Snapshot.build(doc).evaluate("f", {"targetingKey": tk}, NOW).variant
    h = hashing.hash_v3(["f", tk])
    assert h is not None
    point, running, want = (h * sum(weights)) >> 32, 0, None
    for name, weight in zip(names, weights, strict=True):
        running += weight
        if point < running:
            want = name
            break
    assert got == want
