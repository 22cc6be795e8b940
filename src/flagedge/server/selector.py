"""The ``Flagd-Selector`` header: which flags a flagd-protocol call may see.

Syntax (docs/flagd-compat.md section 1.8): one ``key=value`` pair whose key is ``flagSetId`` or
``source``; a bare value means ``source=value``; ``flagSetId=`` (empty) selects the flags that
have no flagSetId. Anything else is INVALID_ARGUMENT.

flagedge serves one definitions source per process; its name (the path or URI as given to
``serve``) is what a ``source=`` selector compares with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from flagedge.errors import RequestError

HEADER = "flagd-selector"


@dataclass(frozen=True, slots=True)
class Selection:
    """A parsed selector; ``ALL`` when the header is absent."""

    flag_set_id: str | None = None
    source: str | None = None
    reflection: Mapping[str, Any] = field(default_factory=dict)

    @property
    def everything(self) -> bool:
        return self.flag_set_id is None and self.source is None

    def admits(self, flag_metadata: Mapping[str, Any], served_source: str | None) -> bool:
        if self.flag_set_id is not None:
            found = flag_metadata.get("flagSetId")
            wanted = self.flag_set_id
            return (found is None or found == "") if wanted == "" else found == wanted
        if self.source is not None:
            return served_source is not None and self.source == served_source
        return True


ALL = Selection()


def parse_selector(raw: str | None) -> Selection:
    if raw is None:
        return ALL
    text = raw.strip()
    if not text:
        return ALL
    if "=" not in text:
        return Selection(source=text, reflection=MappingProxyType({"source": text}))
    key, _, value = text.partition("=")
    key = key.strip()
    value = value.strip()
    if key == "flagSetId":
        return Selection(flag_set_id=value, reflection=MappingProxyType({"flagSetId": value}))
    if key == "source":
        if not value:
            raise RequestError("invalid flagd-selector: source= needs a value")
        return Selection(source=value, reflection=MappingProxyType({"source": value}))
    raise RequestError(
        f"invalid flagd-selector {raw!r}: expected flagSetId=<id>, source=<source> or <source>"
    )


def header_value(metadata: Any) -> str | None:
    """The ``Flagd-Selector`` header of a call's invocation metadata (key/value pairs)."""
    if metadata:
        for item in metadata:
            if item[0] == HEADER:
                value = item[1]
                return value.decode() if isinstance(value, bytes) else str(value)
    return None


def selection_from_metadata(metadata: Any) -> Selection:
    """The selection named by a call's invocation metadata (a sequence of key/value pairs)."""
    return parse_selector(header_value(metadata))


def selection_for(metadata: Any, body: str) -> Selection:
    """The sync service's rule: the header when it names something, else the request's
    (deprecated) ``selector`` field."""
    header = header_value(metadata)
    return parse_selector(header if header is not None and header.strip() else body)
