"""The OpenFeature Python SDK with openfeature-provider-flagd in RPC mode uses flagedge as it
would use flagd: all five types, targeting, errors and change events (which must also clear
the provider's cache of STATIC results)."""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from pathlib import Path

from flagedge.snapshot import SnapshotHolder
from tests.support.documents import DOCUMENT, build
from tests.support.server import async_test, serving

CHILD = Path(__file__).parent / "support" / "openfeature_client.py"


@async_test
async def test_an_openfeature_client_round_trips_every_type_and_hears_changes() -> None:
    holder = SnapshotHolder(build())
    async with serving(holder) as (server, _):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            str(server.port),
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        try:
            line = await child.stdout.readline()
            assert line, "the OpenFeature client exited early"
            results = json.loads(line)
            document = copy.deepcopy(DOCUMENT)
            document["flags"]["static-bool"]["defaultVariant"] = "off"
            holder.install(build(document, version=2))
            after = json.loads(await child.stdout.readline())
            assert await child.wait() == 0
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()

    assert results["boolean"] == {"value": True, "variant": "on", "reason": "STATIC", "error": None}
    assert results["boolean-cached"]["reason"] == "CACHED"
    assert results["string"] == {
        "value": "#f00",
        "variant": "red",
        "reason": "DEFAULT",
        "error": None,
    }
    assert results["string-targeted"]["value"] == "#00f"
    assert results["string-targeted"]["reason"] == "TARGETING_MATCH"
    assert (results["integer"]["value"], results["integer"]["variant"]) == (3, "pi")
    assert results["float"]["value"] == 0.5
    assert results["object"]["value"] == {"size": 3.0, "name": "A"}
    assert results["disabled"] == {
        "value": True,
        "variant": None,
        "reason": "DISABLED",
        "error": None,
    }
    assert results["no-default"]["value"] == "code-default"
    assert results["no-default"]["reason"] == "DEFAULT"
    assert results["missing"]["error"] == "FLAG_NOT_FOUND"
    assert results["mismatch"]["error"] == "TYPE_MISMATCH"
    assert results["parse-error"]["error"] == "PARSE_ERROR"
    assert results["flushed"] == sorted(DOCUMENT["flags"])
    assert after["changed"] == ["static-bool"]
    assert (after["after"]["value"], after["after"]["reason"]) == (False, "STATIC")
