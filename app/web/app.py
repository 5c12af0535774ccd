"""The FastAPI app factory: routes by concern (pages, api, stream), the cross-site and token gates, the error
mapping."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from app.settings import Settings
from app.web import api, errors, metrics, pages, sightings_api, stream
from app.web.auth import CROSS_SITE, OPEN_PATHS, authorised, cross_site, refusal
from app.web.library_access import LibraryAccess
from app.web.live import LiveView
from app.web.recognize import Recognizer


@dataclass
class WebContext:
    """What every route reaches through ``request.app.state.web``."""

    settings: Settings
    live: LiveView
    library: LibraryAccess
    recognizer: Recognizer


def create_app(settings: Settings, live: LiveView, library: LibraryAccess | None = None,
               recognizer: Recognizer | None = None) -> FastAPI:
    app = FastAPI(title="facestream", summary="Live face recognition: the face library and the live view",
                  docs_url="/api/docs", redoc_url=None, openapi_url="/openapi.json")
    app.state.web = WebContext(settings, live, library or LibraryAccess(settings), recognizer or Recognizer(settings))
    errors.install(app)

    @app.middleware("http")
    async def token_gate(request: Request, call_next):
        if cross_site(request):
            return JSONResponse({"detail": CROSS_SITE}, status_code=403)
        path = request.url.path
        if any(path == p or (p.endswith("/") and path.startswith(p)) for p in OPEN_PATHS) \
                or authorised(request, settings.api_token):
            return await call_next(request)
        return refusal(request)

    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(sightings_api.router)
    app.include_router(stream.router)
    app.include_router(metrics.router)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")
    return app
