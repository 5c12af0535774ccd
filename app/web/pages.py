"""Server-rendered pages: live view (one stream, or the grid), the people page, the login form."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from app.web.auth import COOKIE, authorised, safe_next, session_value
from app.web.errors import WebError, one_line
from app.web.views import person_json

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))  # .html: autoescaped
router = APIRouter(include_in_schema=False)


def _page(request: Request, name: str, **context) -> HTMLResponse:
    web = request.app.state.web
    return templates.TemplateResponse(request, name, {"streams": web.live.streams_json(),
                                                      "auth": bool(web.settings.api_token), **context})


@router.get("/", response_class=HTMLResponse)
def live_all(request: Request) -> HTMLResponse:
    streams = request.app.state.web.live.streams
    if len(streams) > 1:
        return _page(request, "live.html", stream=None, src="/stream.mjpg", title="all streams")
    return _page(request, "live.html", stream=0, src="/stream.mjpg", title=streams.get(0) or "stream 0")


@router.get("/live/{n}", response_class=HTMLResponse)
def live_one(n: int, request: Request) -> HTMLResponse:
    streams = request.app.state.web.live.streams
    if n not in streams:
        raise WebError(404, f"no stream {n}: this run has streams {sorted(streams)}")
    return _page(request, "live.html", stream=n, src=f"/stream/{n}.mjpg", title=streams[n] or f"stream {n}")


@router.get("/people", response_class=HTMLResponse)
def people(request: Request) -> HTMLResponse:
    web = request.app.state.web
    try:
        rows, error = [person_json(p) for p in web.library.get().people()], ""
    except Exception as exc:  # noqa: BLE001 - the page says what is wrong instead of failing whole
        rows, error = [], one_line(str(exc))
    return _page(request, "people.html", people=sorted(rows, key=lambda p: p["name"].lower()), error=error,
                 title="people")


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:
    if authorised(request, request.app.state.web.settings.api_token):
        return RedirectResponse(safe_next(next), status_code=303)
    return _page(request, "login.html", next=safe_next(next), error="", title="log in", login=True)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/") -> Response:
    expected = request.app.state.web.settings.api_token
    if not expected or hmac.compare_digest(token.encode(), expected.encode()):
        resp = RedirectResponse(safe_next(next), status_code=303)
        if expected:
            resp.set_cookie(COOKIE, session_value(expected), httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")
        return resp
    page = _page(request, "login.html", next=safe_next(next), error="wrong token", title="log in",
                 login=True)
    page.status_code = 401
    return page


@router.post("/logout")
def logout() -> Response:
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp
