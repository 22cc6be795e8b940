"""``python -m flagedge.config`` prints the README's options table."""

from __future__ import annotations

from .table import options_table

print(options_table(), end="")
