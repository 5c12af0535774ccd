"""``POST /api/recognize`` with the real CPU models: every face of a photo, named from the library's search."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.settings import Settings
from app.web.app import create_app
from app.web.library_access import LibraryAccess
from app.web.live import LiveView
from app.web.recognize import Recognizer
from tests.app.web.conftest import FakeLibrary, jpeg


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_recognize_finds_every_face_with_the_cpu_models(checkpoint_dir, media_dir):
    settings = Settings(checkpoint_dir=str(checkpoint_dir), device="cuda", detector_backend="tensorrt")
    library = FakeLibrary()
    library.enrol_photos("Ada", [("a.jpg", jpeg())])  # the fake's search names every face Ada
    app = create_app(settings, LiveView({0: "x"}), LibraryAccess(settings, library), Recognizer(settings))
    client = TestClient(app)
    photo = (media_dir / "scenes/two_people.jpg").read_bytes()
    resp = client.post("/api/recognize", files=[("image", ("two_people.jpg", photo, "image/jpeg"))])
    assert resp.status_code == 200, resp.text
    faces = resp.json()["faces"]
    assert len(faces) == 2 and all(f["name"] == "Ada" and f["score"] > 0.5 for f in faces)
    assert faces[0]["box"][0] < faces[1]["box"][0]  # left to right
    analyzer = app.state.web.recognizer.analyzer()  # loaded once, on the CPU whatever the pipeline's settings
    for model in (analyzer.detector, analyzer.embedder):
        assert type(model.backend).__name__ == "OnnxRuntimeBackend" and model.backend.device == "cpu"
    assert app.state.web.recognizer.analyzer() is analyzer
    blank = client.post("/api/recognize", files=[("image", ("blank.jpg", jpeg(), "image/jpeg"))])
    assert blank.status_code == 200 and blank.json()["faces"] == []
