"""Errors → HTTP status and one ``{"detail": "..."}`` line (the library's errors keep their one user-facing line)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import FacestreamError
from app.redact import redact

log = logging.getLogger("facestream.web")

#: errors without a ``status`` of their own, by class name (the gallery's, raised from below the library)
STATUS = {"UnknownPerson": 404, "UnknownTrack": 404, "DuplicateName": 409, "NotRunning": 409, "BadPhoto": 422,
          "GalleryUnavailable": 503, "GalleryBusy": 503}


class WebError(FacestreamError):
    """A request the web app itself refuses (upload too large, not an image, nothing to correct)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def status_of(exc: BaseException) -> int:
    status = getattr(exc, "status", None)  # WebError, and every app.library error
    if isinstance(status, int) and 400 <= status < 600:
        return status
    for cls in type(exc).__mro__:
        if cls.__name__ in STATUS:
            return STATUS[cls.__name__]
    return 400


def one_line(text: str) -> str:
    return redact(" ".join(str(text).split()))


def _validation_line(exc: RequestValidationError) -> str:
    """FastAPI's list of problems as one line: where, then what (the first problem; usually the only one)."""
    errors = exc.errors()
    if not errors:
        return "the request is not valid"
    e = errors[0]
    where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "form"))
    msg = e.get("msg", "invalid")
    return f"{where}: {msg}" if where else msg


def install(app: FastAPI) -> None:
    @app.exception_handler(FacestreamError)
    async def _facestream(request: Request, exc: FacestreamError) -> JSONResponse:
        return JSONResponse({"detail": one_line(str(exc))}, status_code=status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": one_line(_validation_line(exc))}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": one_line(str(exc.detail))}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("web: %s %s failed: %s", request.method, request.url.path, one_line(repr(exc)))
        return JSONResponse({"detail": "internal error: the run's log has the cause"}, status_code=500)
