"""Benchmark tools that ship with flagedge: the gRPC load generator (``flagedge bench load``)
and the workloads it and the benchmark suite in ``benchmarks/`` share.

    workloads.py   flag sets and contexts, as plain data, rendered to flagd documents
    load.py        drive any flagedge or flagd-compatible server: calls/s, evaluations/s,
                   latency percentiles and distribution, client and server CPU per call
    cli.py         the ``flagedge bench`` command group
"""
