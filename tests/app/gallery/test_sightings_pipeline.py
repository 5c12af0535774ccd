"""The issue's must-show, as a user runs it: enrol Obama and Lin-Manuel, run the pipeline on the shared clip, find
Obama's sightings with his photo (the clip's Obama segment, frames 211-274, first), erase him (no sighting and no
snapshot of him left); and PRIVACY_BLUR=unknown hides the unknown faces of the output file, not the named ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from app.gallery.sightings import Where, open_sightings
from app.settings import Settings

CLIP = "video/short_hamilton_clip.mp4"


def cli(env: Path, *args: str, timeout: float = 400, **extra: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "app", "--env", str(env), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=env.parent, env={**os.environ, **extra})


@pytest.fixture(scope="module")
def ran(tmp_path_factory, checkpoint_dir, media_dir):
    """One run of the clip, with Obama and Lin-Manuel enrolled: (env, tracks log, annotated file)."""
    root = tmp_path_factory.mktemp("sightings")
    env = root / ".env"
    env.write_text(f"CHECKPOINT_DIR={checkpoint_dir}\nQDRANT_PATH={root / 'gallery'}\nLOG_LEVEL=WARNING\n")
    people = media_dir / "people"
    assert main(["--env", str(env), "enrol", "Barack Obama", *map(str, sorted((people / "obama").iterdir()))]) == 0
    lin = str(people / "lin_manuel_miranda" / "img1.png")
    assert main(["--env", str(env), "enrol", "Lin-Manuel Miranda", lin]) == 0
    log, out = root / "tracks.jsonl", root / "plain.mp4"
    proc = cli(env, "run", "--source", str(media_dir / CLIP), "--headless", "--out", str(out),
               "--log-tracks", str(log))
    assert proc.returncode == 0, proc.stderr
    return env, log, out


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_obamas_photo_finds_his_segment_first_and_remove_leaves_nothing_of_him(ran, media_dir):
    env, _, _ = ran
    photo = media_dir / "people" / "obama" / "obama.jpg"
    proc = cli(env, "sightings", "--photo", str(photo), "--json")
    assert proc.returncode == 0, proc.stderr
    hits = [json.loads(line) for line in proc.stdout.splitlines()]
    assert hits, "no sighting found for Obama's photo"
    first = hits[0]
    assert first["name"] == "Barack Obama" and 211 <= first["first_frame"] <= first["last_frame"] <= 274, first
    assert cv2.imread(first["snapshot"]) is not None  # a JPEG of his face
    lin = cli(env, "sightings", "--name", "lin-manuel miranda", "--json")
    lin_hits = [json.loads(line) for line in lin.stdout.splitlines()]
    assert any(h["first_frame"] >= 82 for h in lin_hits), lin_hits  # his close-up
    assert all(h["last_frame"] <= 210 for h in lin_hits), lin_hits  # and no track of his crosses the cut at 211
    settings = Settings.load(env, environ={})
    with open_sightings(None, settings.qdrant_path, settings.qdrant_collection) as store:
        his = [h.sighting.snapshot for h in store.list(Where(person_id="barack-obama"))]
    assert his and all(Path(p).is_file() for p in his)

    gone = cli(env, "people", "remove", "Barack Obama")
    assert gone.returncode == 0, gone.stderr
    assert f"{len(his)} sighting(s)" in gone.stdout, gone.stdout
    with open_sightings(None, settings.qdrant_path, settings.qdrant_collection) as store:
        assert store.count(Where(person_id="barack-obama")) == 0
        assert all(h.sighting.first_frame < 211 for h in store.list())  # nothing of the audience segment is his
    assert not any(Path(p).exists() for p in his)
    proc = cli(env, "sightings", "--photo", str(photo), "--json")
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout


def detail(frame: np.ndarray, box) -> float:
    x1, y1, x2, y2 = (int(v) for v in box)
    dx, dy = (x2 - x1) // 4, (y2 - y1) // 4
    roi = frame[max(0, y1 + dy):y2 - dy, max(0, x1 + dx):x2 - dx]
    return float(cv2.Laplacian(cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()) if roi.size else 0.0


def frames_of(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return out
        out.append(frame)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_privacy_blur_hides_unknown_faces_in_the_output_and_keeps_named_ones(ran, media_dir, tmp_path):
    env, log, plain = ran
    blurred = tmp_path / "blurred.mp4"
    proc = cli(env, "run", "--source", str(media_dir / CLIP), "--headless", "--out", str(blurred),
               PRIVACY_BLUR="unknown")
    assert proc.returncode == 0, proc.stderr
    a, b = frames_of(plain), frames_of(blurred)
    assert len(a) == len(b) == 275
    unknown, named = [], []
    for line in log.read_text().splitlines():
        row = json.loads(line)
        for face in row["faces"]:
            x1, y1, x2, y2 = face["box"]
            if min(x2 - x1, y2 - y1) < 40:  # too small to measure detail inside
                continue
            pair = (detail(a[row["frame"]], face["box"]), detail(b[row["frame"]], face["box"]))
            (unknown if face["name"] == "unknown" else named).append(pair)
    assert len(unknown) >= 20 and len(named) >= 50, (len(unknown), len(named))
    u_plain, u_blur = np.median([p for p, _ in unknown]), np.median([q for _, q in unknown])
    n_plain, n_blur = np.median([p for p, _ in named]), np.median([q for _, q in named])
    assert u_blur < 0.2 * u_plain, (u_plain, u_blur)  # much less detail where the unknown faces are
    assert 0.8 * n_plain < n_blur < 1.25 * n_plain, (n_plain, n_blur)  # the named faces: as they were
