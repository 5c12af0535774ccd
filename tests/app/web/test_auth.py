"""API_TOKEN: every request needs it (bearer header or the login cookie); without it, loopback only; no secret in
a page or an error; names are escaped in pages."""

from __future__ import annotations

import pytest

from app.errors import FacestreamError
from app.web.auth import COOKIE
from app.web.bind import check_bind
from tests.app.web.conftest import jpeg, make_client

TOKEN = "s3cret-token-value"


@pytest.fixture
def guarded(library, live):
    return make_client(library, live, token=TOKEN)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}])
@pytest.mark.parametrize(("method", "url"), [("get", "/api/people"), ("get", "/api/stats"), ("get", "/stream.mjpg"),
                                             ("get", "/openapi.json"), ("delete", "/api/people/p1"),
                                             ("post", "/api/tracks/0/7/enrol")])
def test_missing_or_wrong_token_is_401_with_one_line(guarded, library, headers, method, url):
    library.enrol_photos("Ada", [("a.jpg", jpeg())])
    before = library.snapshot()
    resp = getattr(guarded, method)(url, headers=headers)
    assert resp.status_code == 401
    assert resp.json()["detail"].startswith("missing or wrong API token")
    assert TOKEN not in resp.text and library.snapshot() == before


def test_bearer_token_lets_requests_through(guarded):
    assert guarded.get("/api/people", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_pages_redirect_to_login_and_the_cookie_is_httponly_and_not_the_token(guarded):
    resp = guarded.get("/people", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/login?next=/people"
    form = guarded.get("/login?next=/people")
    assert form.status_code == 200 and TOKEN not in form.text
    assert "clip.mp4" not in form.text  # nothing about the run before logging in
    wrong = guarded.post("/login", data={"token": "nope", "next": "/people"}, follow_redirects=False)
    assert wrong.status_code == 401 and "wrong token" in wrong.text
    assert COOKIE not in wrong.headers.get("set-cookie", "")
    ok = guarded.post("/login", data={"token": TOKEN, "next": "//evil.example/"}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/"  # never sent off-site
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and TOKEN not in cookie
    assert guarded.get("/people").status_code == 200  # the client keeps the cookie
    assert guarded.get("/api/people").status_code == 200


def test_static_files_need_no_token(guarded):
    assert guarded.get("/static/app.css").status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::"])
def test_non_loopback_without_token_is_refused(host):
    with pytest.raises(FacestreamError, match=rf"^serving the web app on {host}:8080 \(not loopback\) needs API_TOKEN"):
        check_bind(host, 8080, "")
    check_bind(host, 8080, TOKEN)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_token(host):
    check_bind(host, 8080, "")


def test_names_are_escaped_in_pages(client, library):
    library.enrol_photos("<script>alert(1)</script>", [("<img src=x onerror=alert(2)>.jpg", jpeg())])
    page = client.get("/people")
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<img src=x onerror" not in page.text


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:9999"])
def test_a_page_of_another_site_cannot_change_the_library(client, library, origin):
    library.enrol_photos("Ada", [("a.jpg", jpeg())])
    before = library.snapshot()
    resp = client.post("/api/people", data={"name": "Mallory"}, files=[("photos", ("m.jpg", jpeg(), "image/jpeg"))],
                       headers={"Origin": origin})
    assert resp.status_code == 403 and resp.json()["detail"].startswith("cross-site request refused")
    assert library.snapshot() == before
    assert client.get("/api/people", headers={"Origin": origin}).status_code == 200  # reading is not changing


def test_own_pages_and_api_clients_can_change_it(client, library):
    own = client.post("/api/people", data={"name": "Ada"}, files=[("photos", ("a.jpg", jpeg(), "image/jpeg"))],
                      headers={"Origin": "http://testserver"})
    assert own.status_code == 201
    plain = client.post("/api/people", data={"name": "Bob"}, files=[("photos", ("b.jpg", jpeg(), "image/jpeg"))])
    assert plain.status_code == 201  # curl and scripts send no Origin
