"""Sightings beside a running pipeline (the shared clip replayed at its frame rate): they are searchable while the
identify process writes them, and `people remove` through the control socket erases the person's sightings and
snapshots there and then."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.app.library.test_live_pipeline import cli, looped_run

pytestmark = [pytest.mark.slow]


@pytest.fixture
def obama_env(tmp_path, checkpoint_dir, media_dir, monkeypatch) -> Path:
    monkeypatch.setenv("_FS_CLIP", str(media_dir / "video/short_hamilton_clip.mp4"))
    env = tmp_path / ".env"
    env.write_text(f"CHECKPOINT_DIR={checkpoint_dir}\nQDRANT_PATH={tmp_path / 'gallery'}\nLOG_LEVEL=INFO\n")
    obama = media_dir / "people/obama"
    done = cli(env, "enrol", "Barack Obama", str(obama / "obama.jpg"), str(obama / "obama2.jpg"))
    assert done.returncode == 0, done.stderr
    return env


def sightings_of(env: Path, name: str) -> list[dict]:
    proc = cli(env, "sightings", "--name", name, "--json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.mark.timeout(420)
def test_sightings_are_read_and_erased_while_the_pipeline_runs(obama_env, tmp_path):
    log = tmp_path / "tracks.jsonl"
    with looped_run(obama_env, log, loops=20) as proc:
        found: list[dict] = []
        deadline = time.monotonic() + 240
        while not found and time.monotonic() < deadline:  # his track ends at the end of the first replay
            assert proc.poll() is None, (tmp_path / "run-stderr.txt").read_text()
            found = sightings_of(obama_env, "barack obama")
            time.sleep(2)
        assert found, "no sighting of Obama while the pipeline ran"
        # his segment of a replay (a replay's frames go on counting from the last one's)
        assert all(211 <= s["first_frame"] % 275 <= s["last_frame"] % 275 <= 274 for s in found), \
            [(s["first_frame"], s["last_frame"]) for s in found]
        snapshots = [Path(s["snapshot"]) for s in found]
        assert all(p.is_file() for p in snapshots)

        gone = cli(obama_env, "people", "remove", "Barack Obama", timeout=60)
        assert gone.returncode == 0, gone.stderr
        assert "removed Barack Obama" in gone.stdout and " 0 sighting(s)" not in gone.stdout, gone.stdout
        assert sightings_of(obama_env, "barack obama") == []
        assert not any(p.exists() for p in snapshots)
        assert proc.poll() is None  # the pipeline ran on through it all
