"""What counting evaluations for /metrics costs, in process: best of 7 repeats.

    .venv/bin/python -m benchmarks.counting

record() is the servicers' per-evaluation append; the fold is the once-a-second tally that
happens off the request path; handler timing is the per-call histogram wrapper.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from typing import Any

from flagedge.bench.workloads import mixed_context, mixed_doc, rollout_contexts
from flagedge.metrics import ServerMetrics
from flagedge.snapshot import Snapshot


def best(fn: Callable[[], Any], number: int) -> float:
    """Microseconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def main() -> None:
    snap = Snapshot.build(mixed_doc(200), version=1)
    metrics = ServerMetrics()
    counter = metrics.evaluations
    record = counter.record
    keys = list(snap.keys)
    ctx = mixed_context()
    key = next(k for k in keys if snap.flags[k].answer is None)  # a flag with a rule

    plain = best(lambda: snap.evaluate(key, ctx, 0), 200_000)
    counted = best(lambda: record(snap.evaluate(key, ctx, 0)), 200_000)
    counter.fold()

    results = [snap.evaluate(keys[i % len(keys)], ctx, 0) for i in range(100_000)]

    def fold() -> None:
        counter.record_many(results)
        counter.fold()

    fold_ns = best(fold, 1) / len(results) * 1000

    def handler(request: Any, context: Any) -> Any:
        return request

    timed = metrics.timed("bench", handler)
    timing = best(lambda: timed(1, None), 200_000) - best(lambda: handler(1, None), 200_000)

    all_plain = best(lambda: snap.evaluate_all(ctx, 0), 2000)
    all_counted = best(lambda: counter.record_many(snap.evaluate_all(ctx, 0)), 2000)
    counter.fold()

    contexts = rollout_contexts(100)
    batch_keys = keys[:10]
    batch_plain = best(lambda: snap.evaluate_batch(batch_keys, contexts, 0), 300)
    batch = snap.evaluate_batch(batch_keys, contexts, 0)
    batch_count = best(lambda: counter.record_batch(batch), 3000)

    print(f"Evaluate (a rule flag)   {plain:7.3f} us   record() adds {counted - plain:6.3f} us")
    print(f"fold, later              {fold_ns:7.0f} ns per evaluation")
    print(f"handler timing           {timing:7.3f} us per call")
    print(
        f"EvaluateAll (200 flags)  {all_plain:7.1f} us   record_many adds "
        f"{all_counted - all_plain:5.2f} us, fold {fold_ns * 200 / 1000:5.1f} us later"
    )
    print(f"EvaluateBatch (10 x 100) {batch_plain:7.1f} us   record_batch {batch_count:5.2f} us")


if __name__ == "__main__":
    main()
