"""`facestream run --serve [HOST:]PORT` and `--loop`: the refusals, each one line before anything starts."""

from __future__ import annotations

import pytest

from tests.app.cli.test_run import CLIP, run

TOKEN = "tok-3e1c9d-never-printed"


@pytest.fixture
def env(tmp_path, checkpoint_dir):
    env = tmp_path / ".env"
    env.write_text(f"CHECKPOINT_DIR={checkpoint_dir}\nQDRANT_PATH={tmp_path / 'gallery'}\nLOG_LEVEL=WARNING\n")
    return env


REFUSED = ("facestream: error: serving the web app on 0.0.0.0:8080 (not loopback) needs API_TOKEN: set API_TOKEN in "
           ".env (every request must then carry it), or serve on 127.0.0.1")


@pytest.mark.timeout(60)
def test_serve_on_all_addresses_without_token_refuses_to_start(env, media_dir):
    proc = run(env, "--headless", "--serve", "0.0.0.0:8080", "--source", str(media_dir / CLIP))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [REFUSED]


@pytest.mark.timeout(60)
def test_serve_host_setting_is_checked_too(env, media_dir):
    proc = run(env, "--headless", "--serve", "8080", "--source", str(media_dir / CLIP), SERVE_HOST="0.0.0.0")
    assert proc.returncode == 2 and proc.stderr.splitlines() == [REFUSED]


@pytest.mark.timeout(60)
def test_bad_serve_value_names_the_form(env, media_dir):
    proc = run(env, "--headless", "--serve", "eighty", "--source", str(media_dir / CLIP))
    assert proc.returncode == 2
    assert "argument --serve: expected [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080" in proc.stderr


@pytest.mark.timeout(60)
def test_loop_refuses_a_live_source_and_the_token_never_shows(env):
    proc = run(env, "--headless", "--loop", "--serve", "0.0.0.0:8080", "--source", "rtsp://cam.invalid/live",
               API_TOKEN=TOKEN)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "facestream: error: --loop replays files, but rtsp://cam.invalid/live is a live source: drop --loop"]
    assert TOKEN not in proc.stderr + proc.stdout
