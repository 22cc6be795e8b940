"""The control plane's data model (flagedge.store.plane): change messages and overrides are
decoded strictly; anything unreadable is None (a message: reload) or a located
DefinitionError (an override: refused)."""

from __future__ import annotations

import pytest

from flagedge.errors import DefinitionError
from flagedge.store.plane import decode_message, decode_override


def test_messages_and_overrides_are_decoded_strictly() -> None:
    assert decode_message(b"[]") is None
    assert decode_message(b'{"version": true, "kind": "definitions"}') is None
    assert decode_message(b'{"version": 3, "kind": "override"}') is None
    msg = decode_message(b'{"version": 3, "kind": "override", "key": "a", "override": null}')
    assert msg is not None and msg.override is None and msg.key == "a"
    with pytest.raises(DefinitionError) as caught:
        decode_override(b'{"kind": "nuke", "percent": "ten", "x": 1}', "overrides.a")
    paths = [p.path for p in caught.value.problems]
    assert paths == ["overrides.a.kind", "overrides.a.percent", "overrides.a"]
