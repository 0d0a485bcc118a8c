"""Serve the live web page (``/``), its static files and its small runtime config."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["WEB_DIR", "mount_web"]

#: The page ships inside the package (no CDN: it must work offline).
WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def mount_web(app: FastAPI) -> None:
    """Add ``/``, ``/static/*`` and ``/web-config.json`` (all without auth)."""
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

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
