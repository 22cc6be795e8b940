"""Engine benchmarks: what one core does, with no server in the way.

Run:  .venv/bin/python -m pytest benchmarks/test_engine.py --benchmark-only
Figures and targets: BENCHMARKS.md. These check answers, never times.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from flagedge.bench import workloads as W
from flagedge.model import Override, OverrideKind, Reason
from flagedge.snapshot import Snapshot

NOW = 1_700_000_000


def _single(doc: dict[str, Any]) -> tuple[Snapshot, str]:
    snap = Snapshot.build(doc)
    return snap, snap.keys[0]


@pytest.mark.parametrize("workload", ["static", "targeted", "semver"])
def test_single_evaluation(benchmark: Any, workload: str) -> None:
    """One flag, one context, a full Resolution back."""
    if workload == "semver":
        doc = {
            "flags": {
                "v": {
                    "state": "ENABLED",
                    "variants": {"on": True, "off": False},
                    "defaultVariant": "off",
                    "targeting": {
                        "if": [{"sem_ver": [{"var": "appVersion"}, ">=", "2.0.0"]}, "on", "off"]
                    },
                }
            }
        }
        ctx: dict[str, Any] = {"targetingKey": "u1", "appVersion": "2.3.1"}
    else:
        doc = W.doc_for(workload)
        ctx = W.contexts_for(workload)[0]
    snap, key = _single(doc)
    res = benchmark(snap.evaluate, key, ctx, NOW)
    assert res.reason in (Reason.STATIC, Reason.TARGETING_MATCH)
    assert res.value in (True, "on")


def test_single_evaluation_rollout(benchmark: Any) -> None:
    """A 25% fractional rollout, a different user each call."""
    snap, key = _single(W.rollout_doc())
    next_ctx = itertools.cycle(W.rollout_contexts(1000)).__next__
    evaluate = snap.evaluate

    def one() -> Any:
        return evaluate(key, next_ctx(), NOW)

    res = benchmark(one)
    assert res.reason is Reason.TARGETING_MATCH


def test_all_flags_one_context(benchmark: Any, mixed: Snapshot) -> None:
    """All 200 flags of the mixed set for one user."""
    ctx = W.mixed_context()
    out = benchmark(mixed.evaluate_all, ctx, NOW)
    assert len(out) == 200
    assert all(r.error_code is None for r in out)


def test_batch_1000_contexts_x_10_flags(benchmark: Any, mixed: Snapshot) -> None:
    """The server's batch path: packed variant indices for 10,000 cells."""
    # Ten consecutive flags of the mixed set cover its four rule kinds.
    keys = list(mixed.keys[:10])
    ctxs = [dict(W.mixed_context(), targetingKey=f"user-{i}") for i in range(1000)]
    result = benchmark(mixed.evaluate_batch, keys, ctxs, NOW)
    assert len(result.variant_index) == 10_000
    assert min(result.variant_index) >= 0


def test_compile_10000_flags(benchmark: Any) -> None:
    """Validate and compile a 10,000-flag mixed set."""
    doc = W.mixed_doc(10_000)
    snap = benchmark.pedantic(Snapshot.build, args=(doc,), rounds=5, iterations=1)
    assert len(snap.flags) == 10_000


def test_kill_switch_on_10000_flags(benchmark: Any) -> None:
    """Apply one kill switch to a 10,000-flag snapshot (no recompilation)."""
    snap = Snapshot.build(W.mixed_doc(10_000))
    key = snap.keys[1234]
    kill = {key: Override(OverrideKind.KILL)}
    killed = benchmark(snap.with_overrides, kill, 1)
    assert killed.evaluate(key, W.mixed_context(), NOW).reason is Reason.DISABLED
    assert snap.evaluate(key, W.mixed_context(), NOW).reason is not Reason.DISABLED
