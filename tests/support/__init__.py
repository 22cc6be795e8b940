"""What the tests share: real servers and processes to test against, documents, golden
cases, and hypothesis strategies. Imported as ``tests.support.<module>``.

    ports.py          free ports, and starting a program again when its port was taken
    wait.py           bounded polling
    redis_server.py   redis-server children (plain, persistent, ACL, TLS, sentinel)
    processes.py      ``flagedge serve`` children; Redis-fed edges
    server.py         a real gRPC server in the test's process, on port 0
    cli.py            the ``flagedge`` command in the test's process
    documents.py      shared flag documents and the fixed clock
    golden.py         the golden cases (tests/golden/) and JSON equality
    reference.py      the reference evaluator, openfeature-flagd-core
    grammar.py        documents and contexts the reference must agree on (hypothesis)
    hostile.py        hostile text, junk documents, and the checks they must pass

Scripts run as child processes, by path: openfeature_client.py (an OpenFeature client of
one server; the others import its ``connect`` and ``details``), redis_openfeature_client.py
(of one Redis-fed edge) and openfeature_secure_client.py (over TLS with a token).
"""
