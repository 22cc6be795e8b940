"""The diff shown before an edit is written: a unified diff of the flag's pretty JSON."""

from __future__ import annotations

import difflib


def unified(before: str, after: str, name: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), f"{name} (now)", f"{name} (edited)", lineterm=""
    )
    return "\n".join(lines)
