"""The web app reaches only the running pipeline's library: with no owner answering it says so (503) and never
opens the gallery itself (which would lock identify out of it); pages and stats stay up meanwhile."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from app.library import GalleryUnavailable
from app.settings import Settings
from app.web.app import create_app
from app.web.library_access import LibraryAccess, running_library
from app.web.live import LiveView
from tests.app.web.conftest import FakeRecognizer


@pytest.fixture
def no_owner(tmp_path) -> Settings:
    return Settings(qdrant_path=str(tmp_path / "gallery"))


def test_no_owner_is_gallery_unavailable_and_the_gallery_is_never_opened_here(no_owner, tmp_path):
    t0 = time.monotonic()
    with pytest.raises(GalleryUnavailable, match="does not answer yet"):
        running_library(no_owner, wait=0.3)
    assert time.monotonic() - t0 < 5
    assert not (tmp_path / "gallery").exists()


def test_api_says_503_in_one_line_and_pages_stay_up(no_owner, tmp_path):
    access = LibraryAccess(no_owner, opener=lambda s: running_library(s, wait=0.1))
    client = TestClient(create_app(no_owner, LiveView({0: "cam"}), access, FakeRecognizer()))
    resp = client.get("/api/people")
    assert resp.status_code == 503 and "does not answer yet" in resp.json()["detail"]
    stats = client.get("/api/stats")
    assert stats.status_code == 200 and "does not answer yet" in stats.json()["gallery"]["error"]
    page = client.get("/people")
    assert page.status_code == 200 and "does not answer yet" in page.text
    assert not (tmp_path / "gallery").exists()
