"""Peer feature-flag evaluators, benchmarked on the workloads in
``flagedge.bench.workloads``.

Each adapter module exposes ``make(workload) -> Callable[[], None]``: a
zero-argument function performing ONE pass of the workload (one evaluation, or
all 200 for ``all200``; for ``rollout`` each call moves to the next user), and
``EVALS_PER_CALL`` (evaluations per call, by workload).  ``make`` checks the
adapter's answers before returning, so a mis-translated flag fails loudly.

The registry of extra contenders lives here rather than in ``run.py`` so that
``python -m benchmarks.peers.run`` (which executes ``run.py`` as ``__main__``)
and code importing ``benchmarks.peers.run`` see the same registrations.
"""

from __future__ import annotations

from collections.abc import Callable

MakeFn = Callable[[str], Callable[[], None]]

#: Built-in peer adapters: display name -> module under ``benchmarks.peers``.
BUILTIN_PEERS: dict[str, str] = {
    "flagd-core": "flagd_core",
    "flagsmith-engine": "flagsmith",
    "growthbook": "growthbook",
    "launchdarkly": "launchdarkly",
    "unleash-yggdrasil": "unleash",
}

#: Extra contenders registered by name (e.g. flagedge), in registration order.
CONTENDERS: dict[str, MakeFn] = {}


def register(name: str, make: MakeFn) -> None:
    """Add (or replace) a contender benchmarked alongside the built-in peers.

    ``make(workload)`` must return a zero-argument callable doing one pass of
    the workload, exactly like the peer adapters' ``make``.
    """
    if not callable(make):
        raise TypeError("make must be callable")
    CONTENDERS[name] = make
