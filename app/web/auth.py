"""API_TOKEN: every request carries it (``Authorization: Bearer``), or the page's login cookie derived from it.

The cookie holds an HMAC of the token, never the token; comparisons are constant-time. With no token (loopback
only: the server refuses any other address without one) every request is let through.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

COOKIE = "facestream_session"
OPEN_PATHS = ("/login", "/static/")
NO_TOKEN = "missing or wrong API token: send 'Authorization: Bearer <API_TOKEN>' (or log in on the page)"


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"facestream web session", hashlib.sha256).hexdigest()


def authorised(request: Request, token: str) -> bool:
    if not token:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), session_value(token).encode())


def is_page(path: str) -> bool:
    return not (path.startswith("/api/") or path.startswith("/stream") or path in ("/openapi.json", "/metrics"))


def refusal(request: Request) -> Response:
    """Pages go to the login form; the API and the streams get 401 and one line."""
    path = request.url.path
    if request.method == "GET" and is_page(path):
        return RedirectResponse(f"/login?next={quote(path)}", status_code=303)
    return JSONResponse({"detail": NO_TOKEN}, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def safe_next(target: str | None) -> str:
    """Only a path on this site after login (never //elsewhere or a full URL)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CROSS_SITE = "cross-site request refused: change the face library from its own pages or with an API client"


def cross_site(request: Request) -> bool:
    """A changing request sent by a page of another site (its Origin is not this server): a browser sends form
    and multipart POSTs to any address without asking first, so loopback alone would not stop a web page the
    user opens from enrolling or deleting people here. API clients (curl, scripts) send no Origin."""
    if request.method in SAFE_METHODS:
        return False
    origin = request.headers.get("origin")
    if not origin:
        return False
    return origin == "null" or urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()
