"""A small in-memory face library with the interface and the errors of ``app.library``, for the API tests (the
status codes come from those errors); and a TestClient over the web app with a live view fed by hand."""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.library.errors import DuplicateName, UnknownPerson, UnknownPhoto, UnknownTrack
from app.settings import Settings
from app.types import Faces, FrameRef
from app.web.app import create_app
from app.web.library_access import LibraryAccess
from app.web.live import LiveView


@dataclass
class PhotoView:
    id: str
    filename: str


@dataclass
class PersonView:
    id: str
    name: str
    photos: list[PhotoView] = field(default_factory=list)
    embeddings: int = 0


@dataclass
class EnrolView:
    person: PersonView
    added: int = 0


@dataclass
class Match:
    person_id: str
    name: str
    score: float


class FakeLibrary:
    """People and photo bytes in dicts; every failure raises before anything changes."""

    def __init__(self) -> None:
        self.people_: dict[str, PersonView] = {}
        self.bytes_: dict[tuple[str, str], bytes] = {}
        self.tracks: set[tuple[int, int]] = set()
        self.calls: list[tuple] = []
        self._ids = itertools.count(1)

    def snapshot(self):
        return copy.deepcopy((self.people_, self.bytes_))

    def people(self) -> list[PersonView]:
        return list(self.people_.values())

    def person(self, person_id: str) -> PersonView:
        if person_id not in self.people_:
            raise UnknownPerson(f"no person with id {person_id}: see `facestream people`")
        return self.people_[person_id]

    def _check_name(self, name: str) -> None:
        if any(p.name.lower() == name.lower() for p in self.people_.values()):
            raise DuplicateName(f"{name} is already enrolled: add photos to that person instead")

    def _add(self, person: PersonView, photos) -> None:
        for filename, data in photos:
            pid = f"ph{next(self._ids)}"
            person.photos.append(PhotoView(pid, filename))
            self.bytes_[(person.id, pid)] = data
            person.embeddings += 1

    def enrol_photos(self, name, photos, person_id=None) -> EnrolView:
        self.calls.append(("enrol_photos", name, len(photos), person_id))
        if person_id is None:
            self._check_name(name)
            person = PersonView(f"p{next(self._ids)}", name)
        else:
            person = self.person(person_id)
        self._add(person, photos)
        self.people_[person.id] = person
        return EnrolView(person, len(photos))

    def rename(self, person_id, name) -> PersonView:
        person = self.person(person_id)
        self._check_name(name)
        person.name = name
        return person

    def merge(self, person_id, into_id) -> PersonView:
        src, dst = self.person(person_id), self.person(into_id)
        for ph in src.photos:
            self.bytes_[(dst.id, ph.id)] = self.bytes_.pop((src.id, ph.id))
        dst.photos += src.photos
        dst.embeddings += src.embeddings
        del self.people_[person_id]
        return dst

    def remove(self, person_id) -> PersonView:
        person = self.person(person_id)
        del self.people_[person_id]
        return person

    def remove_photo(self, person_id, photo_id) -> PersonView:
        person = self.person(person_id)
        if not any(ph.id == photo_id for ph in person.photos):
            raise UnknownPhoto(f"{person.name} has no photo {photo_id}")
        person.photos = [ph for ph in person.photos if ph.id != photo_id]
        del self.bytes_[(person_id, photo_id)]
        return person

    def photo(self, person_id, photo_id) -> bytes:
        self.person(person_id)
        if (person_id, photo_id) not in self.bytes_:
            raise UnknownPhoto(f"no photo {photo_id} of person {person_id}")
        return self.bytes_[(person_id, photo_id)]

    def enrol_track(self, stream, track_id, name=None, person_id=None, photos=()) -> PersonView:
        self.calls.append(("enrol_track", stream, track_id, name, person_id, len(photos)))
        if (stream, track_id) not in self.tracks:
            raise UnknownTrack(f"no track {track_id} on stream {stream}")
        if person_id is None:
            self._check_name(name)
            person = PersonView(f"p{next(self._ids)}", name)
        else:
            person = self.person(person_id)
        self._add(person, photos)
        self.people_[person.id] = person
        return person

    def correct_track(self, stream, track_id, not_person_id) -> None:
        self.calls.append(("correct_track", stream, track_id, not_person_id))
        self.person(not_person_id)

    def search(self, embeddings) -> list[Match | None]:
        people = list(self.people_.values())
        return [Match(people[0].id, people[0].name, 0.77) if people else None for _ in range(len(embeddings))]

    def status(self) -> dict:
        return {"running": True, "people": len(self.people_),
                "embeddings": sum(p.embeddings for p in self.people_.values())}


def jpeg(colour=(0, 128, 255), size=(80, 64)) -> bytes:
    img = np.full((size[1], size[0], 3), colour, np.uint8)
    cv2.rectangle(img, (10, 10), (40, 40), (255, 255, 255), -1)
    return cv2.imencode(".jpg", img)[1].tobytes()


def one_face(track_id: int = 7, name: str = "unknown", person_id: str = "") -> Faces:
    return Faces(boxes=np.array([[100, 60, 180, 160]], np.float32), scores=np.array([0.9], np.float32),
                 landmarks=np.zeros((1, 5, 2), np.float32), track_ids=np.array([track_id], np.int64),
                 names=[name], person_ids=[person_id], similarities=np.array([0.31], np.float32),
                 nearest=["Ada" if name == "unknown" else ""])


def noisy_frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (360, 640, 3), np.uint8)


class FakeRecognizer:
    """The recognizer's contract without models: one face per image, searched in the library."""

    def __call__(self, image, library):
        match = library.search(np.zeros((1, 512), np.float32))[0]
        return [{"box": [0.0, 0.0, float(image.shape[1]), float(image.shape[0])], "score": 0.99,
                 "name": match.name if match else "unknown", "person_id": match.person_id if match else None,
                 "similarity": match.score if match else None}]


@pytest.fixture
def library() -> FakeLibrary:
    return FakeLibrary()


@pytest.fixture
def live() -> LiveView:
    view = LiveView({0: "clip.mp4"})
    view.recent.observe(FrameRef(seq=1, ts=0.0, stream=0, index=1), noisy_frame(), one_face())
    return view


def make_client(library, live, token: str = "", max_mb: float = 10.0) -> TestClient:
    settings = Settings(api_token=token, upload_max_mb=max_mb)
    app = create_app(settings, live, LibraryAccess(settings, library), FakeRecognizer())
    return TestClient(app)


@pytest.fixture
def client(library, live) -> TestClient:
    return make_client(library, live)


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (the Debian packages to install), or None."""
    import os

    missing = [pkg for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver"))
               if not os.path.exists(path)]
    return f"needs the Debian packages {' and '.join(missing)} (apt-get install -y {' '.join(missing)})" \
        if missing else None


@pytest.fixture(scope="module")
def browser():
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--disable-gpu"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


