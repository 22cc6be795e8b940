"""The shared workloads moved into the package (flagedge.bench.workloads), so that
``flagedge bench load`` can build its requests on an installed flagedge; this name stays for
the peer adapters and the engine benchmarks."""

from flagedge.bench.workloads import *  # noqa: F403
