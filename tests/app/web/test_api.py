"""The REST API over a fake library: every endpoint, and bad input → the right status, one line, nothing changed."""

from __future__ import annotations

import pytest

from tests.app.web.conftest import jpeg, make_client


def one_line(resp) -> str:
    detail = resp.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and detail, resp.text
    return detail


def enrol(client, name="Ada", n=1):
    files = [("photos", (f"a{i}.jpg", jpeg(), "image/jpeg")) for i in range(n)]
    resp = client.post("/api/people", data={"name": name}, files=files)
    assert resp.status_code == 201, resp.text
    return resp.json()["person"]


def test_people_create_list_get_photo(client, library):
    ada = enrol(client, "Ada", 2)
    assert ada["name"] == "Ada" and ada["photo_count"] == 2
    listed = client.get("/api/people").json()
    assert [p["id"] for p in listed] == [ada["id"]]
    assert client.get(f"/api/people/{ada['id']}").json()["embeddings"] == 2
    photo = client.get(ada["photos"][0]["url"])
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert photo.content == library.bytes_[(ada["id"], ada["photos"][0]["id"])]


def test_rename_merge_delete_and_photos(client, library):
    ada, bob = enrol(client, "Ada"), enrol(client, "Bob")
    assert client.patch(f"/api/people/{ada['id']}", json={"name": "Ada L."}).json()["name"] == "Ada L."
    more = client.post(f"/api/people/{bob['id']}/photos", files=[("photos", ("b.png", jpeg(), "image/jpeg"))])
    assert more.status_code == 201 and more.json()["person"]["photo_count"] == 2
    merged = client.patch(f"/api/people/{bob['id']}", json={"merge_into": ada["id"]})
    assert merged.status_code == 200 and merged.json()["photo_count"] == 3
    assert [p["name"] for p in client.get("/api/people").json()] == ["Ada L."]
    photo_id = merged.json()["photos"][0]["id"]
    left = client.delete(f"/api/people/{ada['id']}/photos/{photo_id}")
    assert left.status_code == 200 and left.json()["photo_count"] == 2
    assert client.delete(f"/api/people/{ada['id']}").status_code == 200
    assert client.get("/api/people").json() == []


@pytest.mark.parametrize(("method", "url", "kwargs", "status", "words"), [
    ("get", "/api/people/nope", {}, 404, "no person"),
    ("patch", "/api/people/nope", {"json": {"name": "X"}}, 404, "no person"),
    ("delete", "/api/people/nope", {}, 404, "no person"),
    ("delete", "/api/people/nope/photos/ph1", {}, 404, "no person"),
    ("get", "/api/people/nope/photos/ph1", {}, 404, "no person"),
    ("post", "/api/people/nope/photos", {"files": [("photos", ("a.jpg", jpeg(), "image/jpeg"))]}, 404, "no person"),
    ("post", "/api/tracks/0/99/enrol", {"json": {"name": "X"}}, 404, "no track 99"),
    ("get", "/api/tracks/0/99/crop.jpg", {}, 404, "no track 99"),
    ("post", "/api/tracks/0/99/not", {"json": {}}, 404, "no track 99"),
    ("get", "/stream/3.mjpg", {}, 404, "no stream 3"),
])
def test_unknown_ids_are_404_with_one_line(client, library, method, url, kwargs, status, words):
    enrol(client, "Ada")
    before = library.snapshot()
    resp = getattr(client, method)(url, **kwargs)
    assert resp.status_code == status, resp.text
    assert words in one_line(resp)
    assert library.snapshot() == before


def test_duplicate_name_is_409_and_changes_nothing(client, library):
    ada, bob = enrol(client, "Ada"), enrol(client, "Bob")
    before = library.snapshot()
    dup = client.post("/api/people", data={"name": "ada"}, files=[("photos", ("a.jpg", jpeg(), "image/jpeg"))])
    assert dup.status_code == 409 and "already enrolled" in one_line(dup)
    ren = client.patch(f"/api/people/{bob['id']}", json={"name": "Ada"})
    assert ren.status_code == 409 and "already enrolled" in one_line(ren)
    assert library.snapshot() == before and ada["id"] in library.people_


def test_not_an_image_and_too_large_are_refused_whole(library, live):
    client = make_client(library, live, max_mb=0.1)
    bad = client.post("/api/people", data={"name": "Ada"},
                      files=[("photos", ("ok.jpg", jpeg(), "image/jpeg")),
                             ("photos", ("notes.txt", b"hello", "text/plain"))])
    assert bad.status_code == 422 and "notes.txt is not an image" in one_line(bad)
    big = client.post("/api/people", data={"name": "Ada"},
                      files=[("photos", ("huge.jpg", b"\xff\xd8" + b"0" * 200_000, "image/jpeg"))])
    assert big.status_code == 413
    assert "huge.jpg is larger than the 0.1 MB upload limit (UPLOAD_MAX_MB)" in one_line(big)
    none = client.post("/api/people", data={"name": "Ada"})
    assert none.status_code == 422 and "\n" not in one_line(none)
    rec = client.post("/api/recognize", files=[("image", ("x.gif", b"GIF89a-not-really", "image/gif"))])
    assert rec.status_code == 422 and "x.gif is not an image" in one_line(rec)
    assert library.people_ == {} and library.calls == []


@pytest.mark.parametrize("body", [{}, {"name": "A", "merge_into": "p1"}, {"name": "   "}])
def test_patch_needs_exactly_one_change(client, library, body):
    ada = enrol(client, "Ada")
    before = library.snapshot()
    resp = client.patch(f"/api/people/{ada['id']}", json=body)
    assert resp.status_code == 422 and one_line(resp)
    assert library.snapshot() == before


def test_merge_into_self_is_refused(client, library):
    ada = enrol(client, "Ada")
    resp = client.patch(f"/api/people/{ada['id']}", json={"merge_into": ada["id"]})
    assert resp.status_code == 422 and "themselves" in one_line(resp)


def test_tracks_crop_enrol_and_not(client, library):
    streams = client.get("/api/tracks").json()["streams"]
    assert [s["stream"] for s in streams] == [0]
    (track,) = streams[0]["tracks"]
    assert track["track_id"] == 7 and track["name"] == "unknown" and track["nearest"] == "Ada" and track["live"]
    crop = client.get(track["crop_url"])
    assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8"
    library.tracks.add((0, 7))
    person = client.post("/api/tracks/0/7/enrol", json={"name": "Lin-Manuel Miranda"})
    assert person.status_code == 201 and person.json()["name"] == "Lin-Manuel Miranda"
    assert library.calls[-1] == ("enrol_track", 0, 7, "Lin-Manuel Miranda", None, 1)  # the best crop as a photo
    shown = client.get("/api/tracks").json()["streams"][0]["tracks"][0]
    assert (shown["name"], shown["person_id"]) == ("Lin-Manuel Miranda", person.json()["id"])  # off the review queue
    again = client.post("/api/tracks/0/7/enrol", json={"person_id": person.json()["id"]})
    assert again.status_code == 201 and again.json()["photo_count"] == 2
    ok = client.post("/api/tracks/0/7/not", json={})  # the person it is named as now
    assert ok.status_code == 200 and library.calls[-1] == ("correct_track", 0, 7, person.json()["id"])
    assert client.get("/api/tracks").json()["streams"][0]["tracks"][0]["name"] == "unknown"
    unnamed = client.post("/api/tracks/0/7/not", json={})  # unknown now: nothing to correct
    assert unnamed.status_code == 422 and "not named" in one_line(unnamed)
    assert client.post("/api/tracks/0/7/dismiss").json()["dismissed"]
    assert client.get("/api/tracks").json()["streams"][0]["tracks"][0]["dismissed"]


def test_enrol_track_needs_a_name_or_an_id(client, library):
    library.tracks.add((0, 7))
    for body in ({}, {"name": "A", "person_id": "p1"}, {"name": ""}):
        resp = client.post("/api/tracks/0/7/enrol", json=body)
        assert resp.status_code == 422 and one_line(resp)
    assert library.people_ == {}


def test_recognize_and_stats(client, library):
    ada = enrol(client, "Ada")
    faces = client.post("/api/recognize", files=[("image", ("s.jpg", jpeg(), "image/jpeg"))]).json()["faces"]
    assert faces[0]["name"] == "Ada" and faces[0]["person_id"] == ada["id"]
    stats = client.get("/api/stats").json()
    assert stats["gallery"] == {"running": True, "people": 1, "embeddings": 1}
    assert stats["streams"] == [{"stream": 0, "name": "clip.mp4"}]


def test_openapi_lists_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/people", "/api/people/{person_id}", "/api/people/{person_id}/photos",
                 "/api/people/{person_id}/photos/{photo_id}", "/api/tracks", "/api/tracks/{stream}/{track_id}/crop.jpg",
                 "/api/tracks/{stream}/{track_id}/enrol", "/api/tracks/{stream}/{track_id}/not", "/api/recognize",
                 "/api/stats", "/stream.mjpg", "/stream/{n}.mjpg"):
        assert path in paths, path
    assert client.get("/api/docs").status_code == 200
