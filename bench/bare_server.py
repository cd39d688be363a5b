"""The baseline for router CPU cost: a bare aiohttp handler answering a fixed prediction.

Run as `python -m bench.bare_server`; prints its port on stdout.
"""

from __future__ import annotations

from aiohttp import web

FIXED = b'{"predictions": [1]}'


async def invocations(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=FIXED, content_type="application/json")


async def main() -> None:
    import asyncio

    app = web.Application()
    app.router.add_post("/serving-endpoints/{name}/invocations", invocations)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    import asyncio

    asyncio.run(main())
