"""The benchmark suite: one command, one report (scripts/bench; BENCHMARKS.md explains it).

python -m benchmarks.suite [--quick|--full] [--out DIR] [--sections engine,grpc,...]
python -m benchmarks.suite --quick --compare benchmarks/baseline.json [--threshold 0.25]
python -m benchmarks.suite --report reports/X/report.json --compare benchmarks/baseline.json

machine.py   where and when: CPU, cores, memory, OS, versions, git revision, load average
sections.py  the measurements (engine, cost, memory, grpc, propagation, scaling, peers)
figures.py   every figure flattened with its unit and direction, for benchmarks/compare.py
report.py    report.md from report.json
plots.py     PNGs next to them (matplotlib, when installed)
"""
