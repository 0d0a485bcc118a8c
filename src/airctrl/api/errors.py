"""Map every failure that reaches a request to a short JSON reason, in one place.

Our own exceptions carry ``http_status`` (see :mod:`airctrl.errors`); request
validation problems become 422; anything unexpected becomes a plain 500 whose
body says nothing about the code (the traceback goes to the log only). Logged
failures name the route template (``/v1/subjects/{subject_id}/history``), never
the requested path, which would carry a subject id.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from airctrl.errors import AirctrlError

__all__ = [
    "BadRequestError",
    "PayloadTooLargeError",
    "ServiceBusyError",
    "UploadTimeoutError",
    "error_response",
    "install_error_handlers",
    "short_detail",
]

logger = logging.getLogger(__name__)

#: Longest reason returned to a client; longer messages are cut.
MAX_DETAIL_CHARS = 300


class PayloadTooLargeError(AirctrlError):
    """The request body is larger than ``server.max_upload_bytes`` allows."""

    http_status = 413


class UploadTimeoutError(AirctrlError):
    """The client did not finish sending the request body in time."""

    http_status = 408


class BadRequestError(AirctrlError):
    """The request is malformed (missing file field, wrong content type...)."""

    http_status = 400


class ServiceBusyError(AirctrlError):
    """The server is at its configured capacity; retry later."""

    http_status = 503


def short_detail(text: str) -> str:
    """Return the first line of ``text``, cut to MAX_DETAIL_CHARS ("error" if empty)."""
    first = (text.strip().splitlines() or ["error"])[0]
    return first[:MAX_DETAIL_CHARS]


def error_response(status: int, detail: str) -> JSONResponse:
    """Return ``{"detail": detail}`` with ``status``; the reason cut to one line."""
    return JSONResponse({"detail": short_detail(detail)}, status_code=status)


#: Routes whose oversized uploads are refused before routing; they still count
#: under their own name rather than "unmatched".
UPLOAD_ROUTES = frozenset({"/v1/detect", "/v1/detect/batch"})


def route_template(scope: Mapping[str, Any]) -> str:
    """Return the request's route template for logs and metric labels.

    Never the raw path, which can hold subject ids: an unrouted request is
    "unmatched" (an upload route refused before routing keeps its name), and
    every static file is "/static".
    """
    template = getattr(scope.get("route"), "path", None)
    if not isinstance(template, str):
        path = scope.get("path", "")
        template = path if path in UPLOAD_ROUTES else "unmatched"
    return "/static" if template.startswith("/static") else template


def _airctrl_handler(request: Request, exc: Exception) -> JSONResponse:
    status = getattr(exc, "http_status", 500)
    if status >= 500 and status != 503:
        logger.error(
            "Request %s %s failed: %s",
            request.method,
            route_template(request.scope),
            exc,
        )
        return error_response(500, "internal error")
    return error_response(status, str(exc) or type(exc).__name__)


def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    if errors:
        first = errors[0]
        where = (
            ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        )
        return error_response(422, f"{where}: {first.get('msg', 'invalid')}")
    return error_response(422, "invalid request")


def _http_handler(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, StarletteHTTPException):
        response = error_response(exc.status_code, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response
    return error_response(500, "internal error")


def _unexpected_handler(request: Request, exc: Exception) -> JSONResponse:
    logger.error(
        "Unhandled error on %s %s",
        request.method,
        route_template(request.scope),
        exc_info=exc,
    )
    return error_response(500, "internal error")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into ``{"detail": ...}`` answers."""
    app.add_exception_handler(AirctrlError, _airctrl_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(Exception, _unexpected_handler)
