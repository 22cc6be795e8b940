"""Definitions from a local file: JSON, or YAML when PyYAML is installed.

A file over the size limit (DefinitionLimits.max_bytes, the max-definitions-bytes setting)
is refused before it is parsed, and no more than the limit is ever read, so that a huge or
endless file (a device, a FIFO) cannot exhaust memory. YAML may share a node through an
alias (``&anchor`` ... ``*anchor``); the parsed document is a graph that copying expands,
so its expanded size is measured on the node graph first (each shared node once) and a
document that would expand far beyond what was written is refused with the anchor's line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from ..definitions import DEFAULT_LIMITS
from ..errors import DefinitionError, Problem

# YAML aliases may repeat what a file says, up to this many times its written size (and
# always up to _ALIAS_FLOOR values): enough for shared variant maps, not for a bomb.
_ALIAS_FACTOR = 10
_ALIAS_FLOOR = 100_000


def parse_text(data: bytes, name: str = "") -> Any:
    """Parse JSON (or YAML, by extension) bytes; DefinitionError with the position on failure."""
    if name.endswith((".yaml", ".yml")):
        return _parse_yaml(data, name)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DefinitionError([Problem("", f"invalid JSON: {exc}")], name) from None


def _parse_yaml(data: bytes, name: str) -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover - the dev extra installs it
        raise DefinitionError(
            [Problem("", "YAML needs PyYAML: pip install 'flagedge[yaml]'")], name
        ) from None
    loader = yaml.SafeLoader(data)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_aliases(node, name)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise DefinitionError([Problem("", f"invalid YAML: {exc}")], name) from None
    except RecursionError:  # PyYAML composes and constructs recursively
        raise DefinitionError([Problem("", "invalid YAML: nested too deeply")], name) from None
    finally:
        loader.dispose()


def _check_aliases(root: Any, name: str) -> None:
    """Refuse a YAML node graph whose aliases expand it far beyond its written size, or
    that refers to itself (an alias inside its own anchor). Iterative, each node once."""
    import yaml

    def children(node: Any) -> list[Any]:
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if isinstance(node, yaml.MappingNode):
            return [n for pair in node.value for n in pair]
        return []

    size: dict[int, int] = {}
    uses: dict[int, int] = {}
    nodes: dict[int, Any] = {}
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children(node))
            continue
        uses[key] = uses.get(key, 0) + 1
        if key in size:
            continue
        if key in open_:
            raise DefinitionError(
                [Problem("", f"{_mark(node)}: a YAML alias refers to its own anchor")], name
            )
        nodes[key] = node
        open_.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children(node))
    written, expanded = len(size), size[id(root)]
    allowed = max(_ALIAS_FLOOR, _ALIAS_FACTOR * written)
    if expanded > allowed:
        # Name the shared node whose repetition adds the most.
        worst = max(uses, key=lambda k: (uses[k] - 1) * size[k])
        raise DefinitionError(
            [
                Problem(
                    "",
                    f"YAML aliases expand the document to {expanded} values from {written} "
                    f"as written (at most {allowed}); the node anchored at "
                    f"{_mark(nodes[worst])} is used {uses[worst]} times",
                )
            ],
            name,
        )


def _mark(node: Any) -> str:
    mark = getattr(node, "start_mark", None)
    if mark is None:
        return "an unknown position"
    return f"line {mark.line + 1}, column {mark.column + 1}"


def read_limited(path: Path, max_bytes: int) -> bytes:
    """The file's bytes; DefinitionError when it holds more than ``max_bytes`` (never reading
    more than one byte past the limit, whatever the file claims or is)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise _too_large(path, size, max_bytes)
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise DefinitionError(
            [Problem("", f"cannot read {path}: {exc.strerror}")], str(path)
        ) from None
    if len(data) > max_bytes:
        raise _too_large(path, None, max_bytes)
    return data


def _too_large(path: Path, size: int | None, max_bytes: int) -> DefinitionError:
    what = f"{size} bytes, over" if size is not None else "more than"
    return DefinitionError(
        [Problem("", f"{what} the limit of {max_bytes} bytes (max-definitions-bytes)")],
        str(path),
    )


def load_document(path: str | Path, max_bytes: int = DEFAULT_LIMITS.max_bytes) -> Any:
    """Read a definitions document from disk (not yet validated); at most ``max_bytes``."""
    p = Path(path)
    return parse_text(read_limited(p, max_bytes), p.name)
