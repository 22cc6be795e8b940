"""The data-driven golden cases in tests/golden/*.json, and the JSON equality they are
checked with.

Each golden file holds a flagd flag-definition document ("flags") and a list of cases. A
case states the flag key, the evaluation context (which may contain "targetingKey"),
optionally the requested type, a fixed clock ("now", unix seconds), the fractional bucketing
scheme ("v2" or "v3", default "v3"), the expected flagd 0.16 evaluation.v2 result and
whether the reference evaluator (openfeature-flagd-core) is expected to agree ("agree" or
"skip: <why>").

hash_vectors.json has a different shape (hash test vectors) and is not returned by
load_cases(); use load_hash_vectors() for it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden"
NON_CASE_FILES = {"hash_vectors"}
DEFAULT_NOW = 1_700_000_000


def golden_files() -> list[Path]:
    return sorted(p for p in GOLDEN_DIR.glob("*.json") if p.stem not in NON_CASE_FILES)


def load_cases() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Return (file_stem, case, flags_doc) for every case of every golden file.

    flags_doc is a fresh deep copy per case, so callers may mutate it.
    """
    out: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for path in golden_files():
        data = json.loads(path.read_text(encoding="utf-8"))
        for case in data["cases"]:
            out.append((path.stem, case, copy.deepcopy(data["flags"])))
    return out


def case_id(stem: str, case: dict[str, Any], index: int) -> str:
    return f"{stem}[{index}]:{case['flag']}"


def load_hash_vectors() -> dict[str, Any]:
    return json.loads((GOLDEN_DIR / "hash_vectors.json").read_text(encoding="utf-8"))


def same_json(a: Any, b: Any) -> bool:
    """JSON equality: booleans only equal booleans, numbers compare by ==."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
