"""benchmarks/ofrep.py runs end to end once (correctness only, no figures): the kill switch
reaches every SSE stream, wrk's output is read right, and the wrk runs work where wrk is."""

from __future__ import annotations

import shutil

import pytest

from benchmarks import ofrep

WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:1/ofrep/v1/evaluate/flags/x
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.01ms    1.20ms  30.00ms   90.00%
    Req/Sec     3.20k   100.00     3.40k    70.00%
  Latency Distribution
     50%    4.80ms
     75%    5.20ms
     90%  612.00us
     99%    1.50s
  16000 requests in 5.00s, 3.00MB read
  Non-2xx or 3xx responses: 3
Requests/sec:   3200.00
Transfer/sec:    600.00KB
"""


def test_wrk_output_is_read_with_its_units() -> None:
    result = ofrep.parse_wrk(WRK_OUTPUT)
    assert (result["rps"], result["requests"], result["bad_answers"]) == (3200.0, 16000, 3)
    assert (result["p50"], result["p90"], result["p99"]) == (4.8, 0.612, 1500.0)


def test_wrk_durations_are_read_in_milliseconds() -> None:
    assert ofrep._ms("612.00us") == pytest.approx(0.612)
    assert ofrep._ms("4.80ms") == 4.8 and ofrep._ms("1.50s") == 1500.0


def test_the_lua_script_posts_the_body_with_its_headers_and_pauses_when_asked() -> None:
    script = ofrep._lua(b'{"context": {}}', {"If-None-Match": '"x"'}, 10)
    assert 'wrk.method = "POST"' in script and '"{\\"context\\": {}}"' in script
    assert 'wrk.headers["If-None-Match"] = "\\"x\\""' in script
    assert "function delay() return 10 end" in script


def test_a_kill_switch_reaches_every_event_stream() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server")
    result = ofrep.sse(streams=5, flips=2)
    assert result["samples"] == 10 and 0 < result["p50_ms"] <= result["max_ms"]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_the_single_flag_and_bulk_runs_measure_real_servers() -> None:
    results = ofrep.main(["--quick", "--only", "single", "--only", "bulk"])
    assert results == 0
