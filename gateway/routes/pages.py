"""The built web pages (web/dist): the citizen portal at /portal/, the console at /console/, their /assets/.

Why the gateway serves them: the pages use only the public API, and from the same origin they need
no CORS and no second server in `make run` or in the tests. They are static files outside /v1 and
not part of the API contract (docs/adr/0013), so they are served by their own entrypoint, not by
`ApiRoute`. Hashed assets are cached for a year; the pages themselves are revalidated and carry a
Content-Security-Policy allowing only this origin.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

from nameko.web.handlers import HttpRequestHandler
from werkzeug.security import safe_join
from werkzeug.wrappers import Request, Response

WEB_DIR = Path(os.environ.get("SPORTELLO_WEB_DIR") or Path(__file__).resolve().parents[2] / "web" / "dist")
SECTIONS = ("portal", "console", "assets")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
       "frame-ancestors 'none'")
NOT_BUILT = "The web pages are not built: run `make web` (npm ci && npm run build in web/)."


class PageRoute(HttpRequestHandler):
    """nameko's plain HTTP entrypoint, kept apart from ApiRoute: these URLs are not the API."""


page = PageRoute.decorator


def _text(body: str, status: int) -> Response:
    return Response(body, status=status, mimetype="text/plain", headers={"Cache-Control": "no-store"})


def static_file(section: str, path: str, *, root: Path = WEB_DIR) -> Response:
    """One file of web/dist/<section>/ (a folder means its index.html); 404 for anything else."""
    if section not in SECTIONS:
        return _text("not found", 404)
    if not root.is_dir():
        return _text(NOT_BUILT, 404)
    relative = path if path and not path.endswith("/") else f"{path}index.html"
    joined = safe_join(str(root / section), relative)
    if joined is None or not Path(joined).is_file():
        return _text("not found", 404)
    target = Path(joined)
    mimetype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    headers = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
    if section == "assets":
        headers["Cache-Control"] = "public, max-age=31536000, immutable"  # names carry a content hash
    else:
        headers.update({"Cache-Control": "no-cache", "Content-Security-Policy": CSP, "X-Frame-Options": "DENY"})
    return Response(target.read_bytes(), mimetype=mimetype, headers=headers)


class WebPages:
    """Mixin of GatewayService: the portal and the console as static files."""

    @page("GET", "/portal")
    @page("GET", "/console")
    def web_root(self, request: Request) -> Response:
        return Response("", status=308, headers={"Location": f"{request.path}/"})

    @page("GET", "/portal/")
    @page("GET", "/console/")
    def web_index(self, request: Request) -> Response:
        return static_file(request.path.strip("/"), "")

    @page("GET", "/portal/<path:path>")
    @page("GET", "/console/<path:path>")
    @page("GET", "/assets/<path:path>")
    def web_file(self, request: Request, path: str) -> Response:
        return static_file(request.path.split("/", 2)[1], path)
