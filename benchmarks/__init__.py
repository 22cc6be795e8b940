"""Benchmarks for flagedge (peer comparison lives in ``benchmarks.peers``)."""
