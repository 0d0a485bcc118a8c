"""HTTP routes: detection on uploads, subject history and erasure, health, metrics."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from airctrl.api.app import ServiceState
from airctrl.api.errors import (
    BadRequestError,
    PayloadTooLargeError,
    ServiceBusyError,
    short_detail,
)
from airctrl.api.schemas import (
    BatchItem,
    BatchResponse,
    DetectResponse,
    ErrorBody,
    HealthResponse,
    ReadyResponse,
    SubjectDeleted,
    SubjectHistoryResponse,
    frame_to_schema,
    history_to_schema,
)
from airctrl.decode import DecodedImage, decode_image
from airctrl.errors import (
    AirctrlError,
    UnsupportedMediaError,
)
from airctrl.metrics import metrics_payload, record_decode_failure, record_frame
from airctrl.pipeline import FrameResult
from airctrl.storage import (
    ConsentRequiredError,
    HistoryStore,
    SessionTally,
    validate_subject_id,
)
from airctrl.types import Frame

__all__ = ["detect_bytes", "require_api_key", "router", "service_state"]

logger = logging.getLogger(__name__)

#: Content types accepted as a raw image body (the bytes decide the format).
RAW_IMAGE_TYPES = ("image/", "application/octet-stream")
#: Metrics label for uploads.
METRICS_SOURCE = "api"
#: Subject and session id constraints, as documented in OpenAPI.
ID_REGEX = r"^[A-Za-z0-9_.-]{1,64}$"

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")
_bearer = HTTPBearer(auto_error=False, scheme_name="Bearer")

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Empty or malformed upload"},
    401: {"model": ErrorBody, "description": "Missing or invalid API key"},
    408: {"model": ErrorBody, "description": "Upload not finished in time"},
    413: {"model": ErrorBody, "description": "Upload over server.max_upload_bytes"},
    415: {"model": ErrorBody, "description": "Not an image format AIRCTRL reads"},
    422: {
        "model": ErrorBody,
        "description": "Undecodable, too small, or invalid parameter",
    },
    503: {"model": ErrorBody, "description": "Model or store not available"},
}
_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _ERRORS[401],
    422: _ERRORS[422],
    503: _ERRORS[503],
}


def service_state(request: Request) -> ServiceState:
    """Return the worker's shared state."""
    state: ServiceState = request.app.state.service
    return state


async def require_api_key(
    request: Request,
    api_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """Return the label of the caller's key; raise AuthError (401) without a valid one.

    The key comes from ``X-API-Key`` or ``Authorization: Bearer <key>``. A key
    seen before is accepted on the event loop; a new one is verified (scrypt,
    tens of ms) in a worker thread.
    """
    state = service_state(request)
    if not state.settings.server.require_auth:
        return "anonymous"
    key = api_key or (bearer.credentials if bearer is not None else None)
    label = state.keyring.check_remembered(key)
    if label is not None:
        return label
    checked: str = await run_in_threadpool(state.keyring.check, key)
    return checked


router = APIRouter()
protected = APIRouter(dependencies=[Depends(require_api_key)], responses=_AUTH_ERRORS)


def _store(state: ServiceState) -> HistoryStore:
    if state.store is None:
        raise ServiceBusyError("history store is not open yet")
    return state.store


def decode_counted(data: bytes, source: str) -> DecodedImage:
    """Decode uploaded bytes, counting bytes that do not decode for ``source``.

    The count is ``airctrl_face_detection_failures_total{reason="decode"}``; an
    image that decodes but is too small to analyse is not one.

    Raises:
        EmptyInputError, UnsupportedMediaError, DecodeError: the bytes are not
            a decodable image (counted before the error is raised).
    """
    try:
        return decode_image(data)
    except AirctrlError:
        record_decode_failure(source)
        raise


def detect_bytes(state: ServiceState, data: bytes) -> tuple[FrameResult, str | None]:
    """Decode ``data`` and analyse it on a pooled pipeline (blocking; use a thread).

    Bytes that do not decode are counted first (see :func:`decode_counted`).

    Raises:
        EmptyInputError, UnsupportedMediaError, DecodeError: the bytes are not
            a decodable image.
        ImageTooSmallError: the image decoded but is too small to analyse.
    """
    if state.pool is None:
        raise ServiceBusyError("model is not loaded yet")
    decoded = decode_counted(data, METRICS_SOURCE)
    frame = Frame(decoded.image, 0, 0, METRICS_SOURCE, tuple(decoded.warnings))
    result = state.pool.process(frame)
    record_frame(METRICS_SOURCE, result)
    return result, decoded.source_format


def _store_detection(
    state: ServiceState, subject_id: str, session_id: str, result: FrameResult
) -> str | None:
    """Add the largest face of ``result`` to the subject's history; return a warning."""
    if not result.faces:
        return None
    face = max(result.faces, key=lambda f: f.box.width * f.box.height)
    tally = SessionTally()
    tally.add(face.emotion.label, face.emotion.confidence, time.time())
    try:
        _store(state).merge(subject_id, session_id, tally)
    except ConsentRequiredError as exc:
        return f"history not stored: {exc}"
    return None


async def _read_single_upload(request: Request, limit: int) -> bytes:
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=4)
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise BadRequestError(
                    "multipart upload needs a file in the field 'file'"
                )
            data = await upload.read(limit + 1)
        finally:
            await form.close()
    elif content_type.startswith(RAW_IMAGE_TYPES):
        data = await request.body()
    else:
        raise UnsupportedMediaError(
            "send multipart/form-data with a 'file' field, or the image bytes with "
            "an image/* Content-Type"
        )
    if len(data) > limit:
        raise PayloadTooLargeError(f"upload too large: limit is {limit} bytes")
    return data


#: OpenAPI schema of one file's bytes.
_BINARY = {"type": "string", "format": "binary"}

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": _BINARY},
                }
            },
            "image/jpeg": {"schema": _BINARY},
            "image/png": {"schema": _BINARY},
            "application/octet-stream": {"schema": _BINARY},
        },
    }
}

_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {"files": {"type": "array", "items": _BINARY}},
                }
            }
        },
    }
}

SubjectQuery = Annotated[
    str | None,
    Query(
        pattern=ID_REGEX,
        description="Pseudonymous subject id; stored only with consent on record",
    ),
]
SessionQuery = Annotated[
    str, Query(pattern=ID_REGEX, description="Session the stored stats are filed under")
]


@protected.post(
    "/v1/detect",
    response_model=DetectResponse,
    responses=_ERRORS,
    openapi_extra=_UPLOAD_BODY,
    summary="Find every face in one image and estimate its emotion",
)
async def detect(
    request: Request,
    subject_id: SubjectQuery = None,
    session_id: SessionQuery = "uploads",
) -> DetectResponse:
    """Analyse one uploaded image.

    Send it as multipart field ``file`` or as the raw body with an ``image/*``
    (or ``application/octet-stream``) Content-Type; the bytes decide the format.
    """
    state = service_state(request)
    limit = state.settings.server.max_upload_bytes
    data = await _read_single_upload(request, limit)
    result, source_format = await run_in_threadpool(detect_bytes, state, data)
    response = frame_to_schema(result, source_format=source_format)
    if subject_id is not None:
        warning = await run_in_threadpool(
            _store_detection, state, subject_id, session_id, result
        )
        if warning:
            response.warnings.append(warning)
    return response


@protected.post(
    "/v1/detect/batch",
    response_model=BatchResponse,
    responses=_ERRORS,
    openapi_extra=_BATCH_BODY,
    summary="Analyse several images; each item has its own result or error",
)
async def detect_batch(request: Request) -> BatchResponse:
    """Analyse every file sent in the multipart field ``files`` (upload order kept)."""
    state = service_state(request)
    server = state.settings.server
    if (
        not request.headers.get("content-type", "")
        .lower()
        .startswith("multipart/form-data")
    ):
        raise BadRequestError(
            "send multipart/form-data with one or more 'files' fields"
        )
    form = await request.form(
        max_files=server.max_batch_items, max_fields=server.max_batch_items
    )
    items: list[BatchItem] = []
    try:
        uploads = [v for v in form.getlist("files") if isinstance(v, UploadFile)]
        if not uploads:
            raise BadRequestError("multipart upload needs files in the field 'files'")
        for index, upload in enumerate(uploads):
            data = await upload.read(server.max_upload_bytes + 1)
            name = upload.filename
            if len(data) > server.max_upload_bytes:
                items.append(
                    BatchItem(
                        index=index, filename=name, status=413, error="file too large"
                    )
                )
                continue
            try:
                result, fmt = await run_in_threadpool(detect_bytes, state, data)
            except AirctrlError as exc:
                status = min(500, exc.http_status)
                items.append(
                    BatchItem(
                        index=index,
                        filename=name,
                        status=status,
                        error=short_detail(str(exc)),
                    )
                )
                continue
            items.append(
                BatchItem(
                    index=index,
                    filename=name,
                    status=200,
                    result=frame_to_schema(result, source_format=fmt),
                )
            )
    finally:
        await form.close()
    return BatchResponse(items=items)


SubjectPath = Annotated[
    str, Path(pattern=ID_REGEX, description="Pseudonymous subject id")
]


@protected.put(
    "/v1/subjects/{subject_id}/consent",
    response_model=SubjectHistoryResponse,
    summary="Record the subject's consent to keep aggregated emotion stats",
)
async def record_consent(
    request: Request, subject_id: SubjectPath
) -> SubjectHistoryResponse:
    """Record consent; stats for this subject are stored from now on."""
    state = service_state(request)
    store = _store(state)
    validate_subject_id(subject_id)
    await run_in_threadpool(store.record_consent, subject_id)
    state.erased_subjects.discard(subject_id)
    return history_to_schema(await run_in_threadpool(store.history, subject_id))


@protected.get(
    "/v1/subjects/{subject_id}/history",
    response_model=SubjectHistoryResponse,
    responses={404: {"model": ErrorBody, "description": "No history for this subject"}},
    summary="Aggregated emotion stats of a subject, per session",
)
async def subject_history(
    request: Request, subject_id: SubjectPath
) -> SubjectHistoryResponse:
    """Return per session: counts per emotion, mean confidence, frames, times."""
    store = _store(service_state(request))
    validate_subject_id(subject_id)
    return history_to_schema(await run_in_threadpool(store.history, subject_id))


@protected.delete(
    "/v1/subjects/{subject_id}",
    response_model=SubjectDeleted,
    summary="Erase every trace of a subject (right to erasure)",
)
async def delete_subject(request: Request, subject_id: SubjectPath) -> SubjectDeleted:
    """Delete the subject's consent and stats; open streams for it stop storing."""
    state = service_state(request)
    store = _store(state)
    validate_subject_id(subject_id)
    state.erased_subjects.add(subject_id)
    deleted = await run_in_threadpool(store.delete_subject, subject_id)
    logger.info("Erased a subject's history (found: %s)", deleted)
    return SubjectDeleted(subject_id=subject_id, deleted=deleted)


@router.get("/healthz", response_model=HealthResponse, summary="The process is alive")
async def healthz() -> HealthResponse:
    """Always ok while the process serves requests."""
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "Not ready"}},
    summary="Model loaded and history store reachable",
)
async def readyz(request: Request, response: Response) -> ReadyResponse:
    """200 when the model is loaded and the store answers, else 503."""
    state = service_state(request)
    loaded = state.pool is not None and state.pool.is_loaded
    reachable = state.store is not None and await run_in_threadpool(state.store.ping)
    ready = loaded and reachable
    if not ready:
        response.status_code = 503
    return ReadyResponse(
        status="ready" if ready else "not ready",
        model_loaded=loaded,
        store_reachable=reachable,
    )


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus exposition (every worker merged in multiprocess mode)."""
    body, content_type = metrics_payload()
    return Response(body, media_type=content_type)


router.include_router(protected)
