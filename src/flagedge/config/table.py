"""The README's table of every setting, rendered from the declarations (``python -m
flagedge.config`` prints it; tests/test_config.py keeps the README's copy equal)."""

from __future__ import annotations

from .groups import ALL_GROUPS, CONFIG


def options_table() -> str:
    """The README's table of every setting (Markdown)."""
    rows = [
        "| option | variable | default | what |",
        "|---|---|---|---|",
        f"| `--config` | `{CONFIG.env}` | none | {CONFIG.help} |",
    ]
    for group in ALL_GROUPS:
        rows.append(f"| **{group.title}** | | | *{group.used_by}* |")
        for o in group.options:
            flag = f"`--{o.name}`" if o.cli else "(no flag)"
            default = o.describe_default()
            rows.append(f"| {flag} | `{o.env}` | {default} | {o.help} |")
    return "\n".join(rows) + "\n"
