"""``/api/sightings``: a real embedded sightings store filled with the CPU models' embeddings of the shared photos."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.gallery.sightings import Sighting, sightings_from_settings
from app.settings import Settings
from app.types import FrameRef
from app.web.app import create_app
from app.web.library_access import LibraryAccess
from app.web.live import LiveView
from app.web.recognize import Recognizer
from tests.app.web.conftest import FakeLibrary, jpeg, noisy_frame, one_face

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def recognizer(checkpoint_dir) -> Recognizer:
    return Recognizer(Settings(checkpoint_dir=str(checkpoint_dir)))


@pytest.fixture
def world(tmp_path, media_dir, recognizer):
    """Obama seen twice as a stranger (one of them 2 days ago), Biden once as a known person, on streams 0 and 1."""
    settings = Settings(checkpoint_dir=recognizer.settings.checkpoint_dir, qdrant_path=str(tmp_path / "gallery"),
                        qdrant_url="", match_threshold=0.35)
    people = media_dir / "people"
    now = time.time()
    rows = [(people / "obama/obama.jpg", 1, 0, "", "unknown", now - 60),
            (people / "biden/biden.jpg", 2, 1, "p-biden", "Biden", now - 30),
            (people / "obama/obama2.jpg", 3, 0, "", "unknown", now - 2 * 86400)]
    ids = {}
    with sightings_from_settings(settings) as store:
        for path, track, stream, pid, name, t in rows:
            image = cv2.imread(str(path))
            vector = recognizer.embed_largest(image)
            assert vector is not None
            snap = cv2.imencode(".jpg", image)[1].tobytes()
            ids[track] = store.add(Sighting(stream=stream, track_id=track, first_seen=t - 3, last_seen=t,
                                            embedding=vector, person_id=pid, name=name, run_id="r1",
                                            nearest="Biden" if not pid else "", similarity=0.2), snap)
    live = LiveView({0: "clip.mp4"})
    return settings, ids, live


def _client(settings, live, recognizer, token: str = "") -> TestClient:
    settings = dataclasses.replace(settings, api_token=token)
    app = create_app(settings, live, LibraryAccess(settings, FakeLibrary()), recognizer)
    return TestClient(app)


def test_list_filters_newest_first_with_snapshot_urls(world, recognizer):
    settings, ids, live = world
    client = _client(settings, live, recognizer)
    every = client.get("/api/sightings").json()["sightings"]
    assert [s["id"] for s in every] == [ids[2], ids[1], ids[3]]
    unknown = client.get("/api/sightings", params={"unknown": "true", "since": "1d"}).json()["sightings"]
    assert [s["id"] for s in unknown] == [ids[1]] and unknown[0]["name"] == "unknown" and not unknown[0]["known"]
    assert unknown[0]["nearest"] == "Biden"
    assert [s["id"] for s in client.get("/api/sightings", params={"since": "3600"}).json()["sightings"]] \
        == [ids[2], ids[1]]
    named = client.get("/api/sightings", params={"name": "biden"}).json()["sightings"]
    assert [(s["id"], s["name"], s["stream"]) for s in named] == [(ids[2], "Biden", 1)]
    assert [s["id"] for s in client.get("/api/sightings", params={"stream": 0, "limit": 1}).json()["sightings"]] \
        == [ids[1]]
    snap = client.get(every[0]["snapshot"])
    assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(snap.content, np.uint8), cv2.IMREAD_COLOR) is not None
    for bad, code in (({"since": "yesterday"}, 422), ({"limit": 0}, 422), ({"stream": "x"}, 422)):
        resp = client.get("/api/sightings", params=bad)
        assert resp.status_code == code and "\n" not in resp.json()["detail"], (bad, resp.text)


def test_search_by_photo_finds_that_face_first(world, recognizer, media_dir):
    settings, ids, live = world
    client = _client(settings, live, recognizer)
    photo = (media_dir / "people/obama/obama2.jpg").read_bytes()
    resp = client.post("/api/sightings/search", files=[("image", ("o.jpg", photo, "image/jpeg"))])
    assert resp.status_code == 200, resp.text
    hits = resp.json()["sightings"]
    assert hits[0]["id"] == ids[3] and hits[0]["score"] > 0.9  # the same photo
    assert {h["id"] for h in hits[:2]} == {ids[1], ids[3]} and ids[2] not in [h["id"] for h in hits]
    assert hits[0]["score"] >= hits[1]["score"]


def test_search_by_a_live_track_uses_its_best_crop(world, recognizer, media_dir):
    settings, ids, live = world
    frame = cv2.imread(str(media_dir / "people/biden/biden2.jpg"))
    faces = one_face(track_id=9)
    h, w = frame.shape[:2]
    faces.boxes[0] = [0, 0, w - 1, h - 1]  # the whole photo is the track's crop
    live.recent.observe(FrameRef(seq=1, ts=0.0, stream=0, index=1), frame, faces)
    client = _client(settings, live, recognizer)
    resp = client.post("/api/sightings/search", json={"stream": 0, "track": 9})
    assert resp.status_code == 200, resp.text
    assert [h["id"] for h in resp.json()["sightings"]][:1] == [ids[2]]
    gone = client.post("/api/sightings/search", json={"stream": 0, "track": 404})
    assert gone.status_code == 404 and "/api/tracks" in gone.json()["detail"]


def test_search_refuses_bad_input_in_one_line(world, recognizer):
    settings, _, live = world
    client = _client(settings, live, recognizer)
    cases = [({"files": [("image", ("blank.jpg", jpeg(), "image/jpeg"))]}, 422, "no face"),
             ({"files": [("image", ("x.jpg", b"not an image", "image/jpeg"))]}, 422, "not an image"),
             ({"files": [("other", ("x.jpg", jpeg(), "image/jpeg"))]}, 422, "'image'"),
             ({"json": {"stream": 0}}, 422, '"track"'),
             ({"content": b"{", "headers": {"content-type": "application/json"}}, 422, '"track"')]
    for kw, code, text in cases:
        resp = client.post("/api/sightings/search", **kw)
        assert resp.status_code == code and text in resp.json()["detail"], (kw, resp.text)
        assert "\n" not in resp.json()["detail"]
    small = _client(dataclasses.replace(settings, upload_max_mb=0.001), live, recognizer)
    big = small.post("/api/sightings/search", files=[("image", ("n.jpg", cv2.imencode(".png", noisy_frame())[1]
                                                               .tobytes(), "image/png"))])
    assert big.status_code == 413


def test_the_snapshot_route_serves_only_files_in_the_snapshots_folder(world, recognizer, tmp_path):
    settings, ids, live = world
    client = _client(settings, live, recognizer)
    for bad in ("not-a-uuid", "..%2F..%2Fetc%2Fpasswd", "00000000-0000-0000-0000-000000000000"):
        assert client.get(f"/api/sightings/{bad}/snapshot.jpg").status_code == 404, bad
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(jpeg())
    with sightings_from_settings(settings) as store:  # a stored path that points outside the folder
        vector = np.ones(store.dim, np.float32) / np.sqrt(store.dim)
        tricked = Sighting(stream=0, track_id=77, first_seen=1.0, last_seen=2.0, embedding=vector, run_id="r2",
                           snapshot=str(outside))
        store._upsert([tricked.point_id()], vector[None], [tricked.payload()])
        assert store.get(tricked.point_id()).snapshot == str(outside)
    tricked = tricked.point_id()
    resp = client.get(f"/api/sightings/{tricked}/snapshot.jpg")
    assert resp.status_code == 404 and Path(outside).exists()


def test_the_token_is_required_when_set(world, recognizer):
    settings, ids, live = world
    client = _client(settings, live, recognizer, token="s3cret")
    assert client.get("/api/sightings").status_code == 401
    assert client.get(f"/api/sightings/{ids[1]}/snapshot.jpg").status_code == 401
    assert client.post("/api/sightings/search", json={"stream": 0, "track": 1}).status_code == 401
    ok = client.get("/api/sightings", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and len(ok.json()["sightings"]) == 3


@pytest.mark.timeout(180)
def test_the_people_page_lists_a_stored_unknown_sighting_and_names_it(tmp_path, media_dir, browser):
    from selenium.webdriver.common.by import By

    from app.web.server import WebServer
    from tests.app.faults.servers import wait_for
    from tests.app.web.test_browser import shot

    settings = Settings(api_token="t0ken", qdrant_path=str(tmp_path / "gallery"), qdrant_url="")
    photo = (media_dir / "people/obama/obama.jpg").read_bytes()
    rng = np.random.default_rng(1)
    with sightings_from_settings(settings) as store:
        vector = rng.normal(size=store.dim).astype(np.float32)
        store.add(Sighting(stream=0, track_id=5, first_seen=time.time() - 90, last_seen=time.time() - 80,
                           embedding=vector / np.linalg.norm(vector), nearest="<b>Ada</b>", similarity=0.27,
                           run_id="r1"), photo)
    library = FakeLibrary()
    srv = WebServer(settings, 0, "127.0.0.1", {0: "door"}, LibraryAccess(settings, library))
    try:
        browser.get(f"http://127.0.0.1:{srv.port}/people")
        browser.find_element(By.ID, "token").send_keys("t0ken\n")
        cards = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#sightings-review .sighting"), 15,
                         "the stored unknown sighting on the people page")
        assert len(cards) == 1 and "nearest <b>Ada</b> 0.27" in cards[0].text  # text, not markup
        img = cards[0].find_element(By.TAG_NAME, "img")
        wait_for(lambda: browser.execute_script("return arguments[0].naturalWidth", img), 10, "the snapshot loaded")
        shot(browser, "h13-people-stored-sighting.png")
        cards[0].find_element(By.TAG_NAME, "input").send_keys("Barack")
        cards[0].find_element(By.TAG_NAME, "button").click()
        person = wait_for(lambda: next((p for p in library.people_.values() if p.name == "Barack"), None), 15,
                          "Barack enrolled from the snapshot")
        assert library.bytes_[(person.id, person.photos[0].id)] == photo
    finally:
        srv.close()


@pytest.mark.timeout(180)
def test_seen_before_in_the_naming_dialog_lists_that_faces_sightings(world, media_dir, browser):
    from selenium.webdriver.common.by import By

    from app.web.server import WebServer
    from tests.app.faults.servers import wait_for
    from tests.app.web.test_browser import shot

    settings, ids, _ = world
    srv = WebServer(settings, 0, "127.0.0.1", {0: "door"}, LibraryAccess(settings, FakeLibrary()))
    frame = cv2.imread(str(media_dir / "people/biden/biden2.jpg"))
    faces = one_face(track_id=9)
    faces.boxes[0] = [0, 0, frame.shape[1] - 1, frame.shape[0] - 1]
    srv.live.recent.observe(FrameRef(seq=1, ts=0.0, stream=0, index=1), frame, faces)
    done = threading.Event()

    def feed() -> None:  # the page finishes loading once its MJPEG stream sends a picture
        while not done.wait(0.2):
            srv.live.publish(0, frame)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        browser.get(f"http://127.0.0.1:{srv.port}/")
        card = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#recent .face[data-track='0/9']"), 15,
                        "the live face in the strip")
        card[0].click()
        wait_for(lambda: browser.find_element(By.ID, "name-dialog").get_attribute("open") is not None, 5, "dialog")
        browser.find_element(By.ID, "dlg-seen").click()
        found = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#dlg-seen-list .sighting"), 120,
                         "the face's earlier sightings")
        assert found[0].get_attribute("data-sighting") == ids[2] and "Biden" in found[0].text
        shot(browser, "h13-seen-before.png")
    finally:
        done.set()
        feeder.join(5)
        srv.close()
