"""flagedge on the peer workloads, through its public Snapshot API."""

from __future__ import annotations

import functools
from collections.abc import Callable
from itertools import cycle

from flagedge.bench import workloads as W
from flagedge.bench.workloads import EVALS_PER_CALL  # noqa: F401  (re-exported)
from flagedge.snapshot import Snapshot

NAME = "flagedge"
DIST = "flagedge"
NOW = 1_700_000_000


def make(workload: str) -> Callable[[], object]:
    specs = W.specs_for(workload)
    snap = Snapshot.build(W.doc_for(workload))
    ctxs = W.contexts_for(workload)
    evaluate = snap.evaluate

    # --- correctness ------------------------------------------------------
    if workload == "rollout":
        W.check_rollout_share([evaluate(specs[0].key, c, NOW).value for c in ctxs])
    else:
        values = {s.key: evaluate(s.key, ctxs[0], NOW).value for s in specs}
        W.check_results(workload, values, ctxs[0])
        if workload == "targeted":
            off = evaluate(specs[0].key, W.targeted_context_nonmatching(), NOW).value
            assert off == "off", off

    # --- timed callable ------------------------------------------------------
    if workload == "all200":
        # One evaluate_all call resolves every flag for the context.
        return functools.partial(snap.evaluate_all, ctxs[0], NOW)
    key = specs[0].key
    if workload == "rollout":
        next_ctx = cycle(ctxs).__next__

        def run_rollout() -> object:
            return evaluate(key, next_ctx(), NOW)

        return run_rollout
    # A bound partial: the caller pays for flagedge, not for a Python wrapper frame.
    return functools.partial(evaluate, key, ctxs[0], NOW)
