from collections.abc import Callable, Mapping
from typing import Any

def v3_pair(prefix: bytes, targeting_key: object) -> int | None: ...
def evaluate(
    flags: Mapping[str, Any],
    fallback: Callable[..., Any],
    key: str,
    context: Mapping[str, Any],
    now: int,
    flag_type: Any = None,
) -> Any: ...
def v3_choose(
    prefix: bytes,
    context: Mapping[str, Any],
    limits: bytes,
    outcomes: tuple[Any, ...],
    none_outcome: Any,
) -> Any: ...
