"""benchmarks/admin.py runs end to end (tiny sizes; the figures come from running it)."""

from __future__ import annotations

import os
import shutil

import pytest

from benchmarks import admin


@pytest.mark.timeout(300)
@pytest.mark.skipif(
    not os.path.exists(shutil.which("chromium") or "/usr/bin/chromium"), reason="no chromium"
)
def test_the_admin_benchmark_measures_every_target() -> None:
    got = admin.main(["--flags", "40", "--kills", "2", "--reads", "5", "--paints", "1"])
    assert got["rows"] == 40
    assert got["first_paint_ms"]["n"] == 1
    assert set(got["kill_to_three_edges_ms"]) == {"ui", "cli"}
    assert all(v["n"] == 5 for v in got["api_reads_ms"].values())
