"""The baseline for OFREP's throughput: a bare aiohttp handler answering a constant JSON body.

    python -m benchmarks.http_baseline PORT [app|lowlevel]

``app`` (the baseline benchmarks/ofrep.py compares with): aiohttp as its documentation
writes a handler, web.Application with one POST route returning a web.Response of constant
bytes; the request body is not read. ``lowlevel``: the same handler on aiohttp's low-level
web.Server (no application, router or middleware chain), the floor of what any aiohttp
handler can cost. Both run on uvloop, as ``flagedge serve`` does, with access logs off and
their startup heap frozen out of the cyclic GC (as serve's), and print ``serving HTTP on
127.0.0.1:PORT`` once bound.
"""

from __future__ import annotations

import asyncio
import gc
import sys

import orjson
from aiohttp import web

# An OFREP success of the size flagedge answers for the benchmarked flag.
BODY = orjson.dumps(
    {
        "key": "mixed-targeted-000",
        "value": True,
        "reason": "TARGETING_MATCH",
        "variant": "on",
        "metadata": {},
    }
)


async def constant(request: web.BaseRequest) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


async def main(port: int, kind: str) -> None:
    runner: web.BaseRunner
    if kind == "app":
        app = web.Application()
        app.router.add_post("/ofrep/v1/evaluate/flags/{key}", constant)
        runner = web.AppRunner(app, access_log=None)
    else:
        runner = web.ServerRunner(web.Server(constant, access_log=None))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    gc.freeze()  # as flagedge serve does once it serves: the same GC for both
    print(f"serving HTTP on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "app"))
