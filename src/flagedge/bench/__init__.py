"""Benchmark tools that ship with flagedge: the gRPC load generator (``flagedge bench load``)
and the workloads it and the benchmark suite in ``benchmarks/`` share.

    workloads.py   flag sets and contexts, as plain data, rendered to flagd documents
    load.py        ``flagedge bench load``: its options and output; drives any flagedge or
                   flagd-compatible server: calls/s, evaluations/s, latency percentiles and
                   distribution, client and server CPU per call
    scenarios.py   what it asks: one scenario per evaluation method, the Workload (flags,
                   context) that serialises each request, the benchmark flag set
    target.py      how it reaches a server (TLS, token), and the probe call before the clock
    worker.py      one load process: channels and lanes (closed loop, open loop, streams)
    runs.py        one timed run of a scenario (processes started together), and the matrix
                   of targets x scenarios x repeats
    figures.py     percentiles, CPU per call, medians over runs, a row as text
    cli.py         the ``flagedge bench`` command group
"""
