"""The optional C speed-ups (``flagedge._speedups``), or None.

Built from ``_speedups.c`` when a C compiler is available at install time; without it
flagedge runs the same paths in Python. ``FLAGEDGE_PURE_PYTHON=1`` ignores a built module,
which the tests use to check that both paths give the same answers.
"""

from __future__ import annotations

import os
from types import ModuleType

speedups: ModuleType | None = None
if os.environ.get("FLAGEDGE_PURE_PYTHON", "") not in ("1", "true", "yes"):
    try:
        from . import _speedups as speedups
    except ImportError:  # pragma: no cover - built without a compiler
        speedups = None
