"""Definitions from a local file: JSON, or YAML when PyYAML is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from ..errors import DefinitionError, Problem


def parse_text(data: bytes, name: str = "") -> Any:
    """Parse JSON (or YAML, by extension) bytes; DefinitionError with the position on failure."""
    if name.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:  # pragma: no cover - the dev extra installs it
            raise DefinitionError(
                [Problem("", "YAML needs PyYAML: pip install 'flagedge[yaml]'")], name
            ) from None
        try:
            return yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise DefinitionError([Problem("", f"invalid YAML: {exc}")], name) from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DefinitionError([Problem("", f"invalid JSON: {exc}")], name) from None


def load_document(path: str | Path) -> Any:
    """Read a definitions document from disk (not yet validated)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DefinitionError([Problem("", f"cannot read {p}: {exc.strerror}")], str(p)) from None
    return parse_text(data, p.name)
