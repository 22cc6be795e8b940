"""The ``flagedge`` command run in the test's own process (quick, and its code is measured
like any other); tests that need the real process run ``python -m flagedge``."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

from flagedge import cli


def flagctl(*argv: str) -> tuple[int, str, str]:
    """Run the ``flagedge`` CLI in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def push(redis_url: str, env: str, directory: Path, doc: dict[str, Any]) -> int:
    """``flagedge push`` of ``doc`` (written to directory/flags.json); the version it wrote."""
    path = directory / "flags.json"
    path.write_text(json.dumps(doc))
    code, out, err = flagctl("push", str(path), "--redis", redis_url, "--env", env)
    assert code == 0, err
    return int(out.rsplit("version ", 1)[1])
