"""The ASGI application `pcc serve` runs: the REST API under ``/api/v1``, its OpenAPI 3
document and interactive docs (every asset served from the package), and the web page."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from pcc import __version__
from pcc.api import errors
from pcc.controller.service import Service
from pcc.controller.settings import Settings
from pcc.controller.store import Store
from pcc.web.assets import SWAGGER

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
# Threads that run the (synchronous) routes. Python runs one at a time, so more add no
# throughput, only contention: with anyio's default of 40, 100 clients listing their
# reservations cost the server 9 times the CPU per request (bench/api_latency.py).
WORKER_THREADS = 4


class Services:
    """One :class:`Service` per worker thread, each with its own SQLite connection (a
    connection's transactions must not interleave across threads)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()

    def __call__(self) -> Service:
        svc: Service | None = getattr(self._local, "service", None)
        if svc is None:
            svc = Service(self.settings, Store(self.settings.database), sync_sites=False)
            self._local.service = svc
        return svc


def create_app(settings: Settings, web: bool = True) -> FastAPI:
    """The application over ``settings``' store (whose sites `pcc serve` has synced)."""
    from pcc.api.routes import router

    services = Services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="PCC",
        version=__version__,
        summary="Reserve virtual clusters at federated research-cloud sites.",
        description=(
            "Every call needs `Authorization: Bearer <token>`; make a token with "
            "`pcc tokens create`, or on the web page's Tokens page. Times are ISO 8601 with a zone. "
            'Errors are `{"error": {"type", "message"}}`.'
        ),
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    app.state.settings = settings
    errors.install(app)
    app.include_router(router(services))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/api/openapi.json",
            title="PCC API",
            swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png",
            # No badge from validator.swagger.io: the page loads nothing from elsewhere.
            swagger_ui_parameters={"validatorUrl": None},
        )

    if web:
        from pcc.web.pages import router as pages

        app.include_router(pages(services, settings))
    return app
