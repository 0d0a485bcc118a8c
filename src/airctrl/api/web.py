"""Serve the live web page (``/``), its static files and its small runtime config."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["WEB_DIR", "mount_web"]

#: The page ships inside the package (no CDN: it must work offline).
WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def _swagger_ui_dir() -> Path:
    """Folder of the Swagger UI files inside the swagger-ui-py package.

    Located without importing the package, whose adapters pull in web frameworks
    we do not use.
    """
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed; reinstall airctrl")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def mount_web(app: FastAPI) -> None:
    """Add ``/``, ``/static/*``, ``/web-config.json`` and ``/docs`` (no auth).

    The OpenAPI page's script and style come from the ``swagger-ui-py``
    package (Swagger UI 5, which reads the OpenAPI 3.1 documents FastAPI
    writes), served under ``/docs-assets``, so ``/docs`` works offline.
    """
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    app.mount(
        "/docs-assets", StaticFiles(directory=_swagger_ui_dir()), name="docs-assets"
    )

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="AIRCTRL API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    @app.get("/web-config.json", include_in_schema=False)
    async def web_config(request: Request) -> JSONResponse:
        state = request.app.state.service
        server = state.settings.server
        return JSONResponse(
            {
                "auth_required": server.require_auth,
                "kiosk_key": state.kiosk_key,
                "storage": state.settings.storage.backend,
            }
        )
