"""Domain exceptions as HTTP answers, in one place: ``{"error": {"type", "message"}}`` with
400/401/403/404/409/422 (and 500/503 for PCC's own trouble), never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from pcc.common.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PccError,
    TemporaryError,
    Unauthenticated,
    UserInputError,
)
from pcc.common.timefmt import iso

log = logging.getLogger(__name__)

# First match wins: the specific kinds of user error before UserInputError itself.
STATUS: tuple[tuple[type[Exception], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (UserInputError, 400),
    (TemporaryError, 503),
    (PccError, 500),
)

ERROR_STATUSES = (400, 401, 403, 404, 409, 422)


def status_of(exc: Exception) -> int:
    return next((code for kind, code in STATUS if isinstance(exc, kind)), 500)


def body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, **{k: v for k, v in extra.items() if v is not None}}}


def error_response(exc: PccError) -> JSONResponse:
    status = status_of(exc)
    extra: dict[str, Any] = {}
    if isinstance(exc, Conflict):
        extra["reason"] = exc.reason
        window = exc.details.get("next_window")
        if window is not None:
            extra["next_window"] = {"begin": iso(window.begin), "end": iso(window.end)}  # type: ignore[attr-defined]
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status >= 500:
        log.error("API: %s: %s", type(exc).__name__, exc)
    return JSONResponse(body(type(exc).__name__, str(exc), **extra), status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(PccError)
    async def _pcc(request: Request, exc: PccError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        first = details[0] if details else {"where": "request", "problem": "invalid"}
        message = f"{first['where']}: {first['problem']}"
        return JSONResponse(body("ValidationError", message, details=details), status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        kind = {401: "Unauthenticated", 404: "NotFound", 405: "MethodNotAllowed"}.get(
            exc.status_code, "HTTPError"
        )
        return JSONResponse(
            body(kind, str(exc.detail)), status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )
