"""Serves the management web UI at /ui: static HTML, CSS and ES modules shipped in this package.

No build step and no CDN: the files under static/ are what the browser runs. Every action the UI takes
goes through the same REST API users call, with the signed-in token as `Authorization: Bearer`.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).resolve().parent / "static"
PREFIX = "/ui"

# The UI loads nothing from elsewhere and runs no inline script: say so to the browser.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",   # revalidate (ETag): a new Podium version shows at once
}


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)


async def redirect_to_index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(PREFIX + "/")


async def static_file(request: web.Request) -> web.StreamResponse:
    # resolve() and the parent check keep `..` from leaving static/.
    path = (STATIC / request.match_info["path"]).resolve()
    if STATIC not in path.parents or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers=SECURITY_HEADERS)


def add_ui_routes(app: web.Application) -> None:
    app.router.add_get(PREFIX, redirect_to_index)
    app.router.add_get(PREFIX + "/", index)
    app.router.add_get(PREFIX + "/static/{path:.+}", static_file)
