"""The must-show: a real browser (Debian's chromium through chromedriver) on a running pipeline replaying the
shared clip like a camera (--loop --realtime), with only Obama enrolled. The page shows the stream and the stats,
the recent-faces strip shows tracks, clicking Lin-Manuel Miranda's and typing his name enrols him, and within a few
seconds the pipeline draws that name on the live video. A screenshot of each step goes to SHOTS (look at them)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app.cli import main
from tests.app.faults.servers import free_port, shm_segments, stage_pids, wait_for

SHOTS = Path(os.environ.get("FACESTREAM_SHOTS", "/work/notes/shots"))
LIN = "Lin-Manuel Miranda"
CLIP_FRAMES = 275
LIN_FRAMES = range(95, 200)  # his close-up is frames 82-210 of each pass; a margin on both sides

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def obama_env(tmp_path_factory, checkpoint_dir, media_dir):
    root = tmp_path_factory.mktemp("browser")
    env = root / ".env"
    env.write_text(f"CHECKPOINT_DIR={checkpoint_dir}\nQDRANT_PATH={root / 'gallery'}\nLOG_LEVEL=INFO\n")
    assert main(["--env", str(env), "enrol", "Barack Obama", str(media_dir / "people/obama/obama.jpg")]) == 0
    return env


@pytest.fixture(scope="module")
def pipeline(obama_env, media_dir):
    """`facestream run --loop --realtime --headless --serve PORT --log-tracks F` in its own process group."""
    port, log = free_port(), obama_env.parent / "tracks.jsonl"
    err = open(obama_env.parent / "stderr.txt", "w")  # noqa: SIM115 - handed to the child; closed below
    proc = subprocess.Popen([sys.executable, "-m", "app", "--env", str(obama_env), "run", "--source",
                             str(media_dir / "video/short_hamilton_clip.mp4"), "--loop", "--realtime", "--headless",
                             "--serve", str(port), "--log-tracks", str(log)],
                            stdout=err, stderr=err, cwd=obama_env.parent, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get_json(f"{base}/api/stats"), 120, "the web app to answer", proc)
        yield proc, base, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as from a terminal: every stage stops
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        err.close()


def get_json(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


def rows(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.endswith("}")]


def lin_track(log: Path) -> int | None:
    """A track on screen now (in the last frames) whose frames lie inside Lin-Manuel's close-up."""
    recent = rows(log)[-3:]
    for row in reversed(recent):
        if row["frame"] % CLIP_FRAMES in LIN_FRAMES and len(row["faces"]) == 1 and row["faces"][0]["track_id"] >= 0:
            return row["faces"][0]["track_id"]
    return None


def alive(pid: int) -> bool:
    """Still running (a zombie waiting for its reaper counts as dead: it holds no lock or socket)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def shot(driver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    driver.save_screenshot(str(path))
    return path


def test_name_a_face_from_the_page_and_see_it_drawn_live(browser, pipeline, obama_env):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    proc, base, log = pipeline
    browser.get(base + "/")
    # 1. the stream and the stats
    wait_for(lambda: browser.execute_script("const v = document.getElementById('video');"
                                            "return v.complete && v.naturalWidth > 0"), 60, "the live video", proc)
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#stats-table tbody tr")) >= 6, 30, "the stats", proc)
    stages = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#stats-table tbody td:first-child")]
    assert {"capture", "detect", "embed+track", "identify", "display"} <= set(stages), stages
    assert "gallery: " in browser.find_element(By.ID, "stats-gallery").text
    shot(browser, "1-live-page.png")
    # 2. the recent-faces strip shows tracks
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#recent .face img"), 60, "a face in the strip", proc)
    # 3. click Lin-Manuel's track while he is on screen, type his name
    tid = wait_for(lambda: lin_track(log), 60, "Lin-Manuel's close-up", proc)
    assert all(f["name"] != LIN for r in rows(log) for f in r["faces"]), "named before he was enrolled"
    card = f"#recent .face[data-track='0/{tid}']"
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, card), 15, f"track {tid} in the strip", proc)
    shot(browser, "2-recent-faces.png")

    def click() -> bool:
        try:
            browser.find_element(By.CSS_SELECTOR, card).click()
            return browser.find_element(By.ID, "name-dialog").get_attribute("open") is not None
        except StaleElementReferenceException:  # the strip was redrawn between find and click
            return False

    wait_for(click, 10, "the naming dialog", proc)
    browser.find_element(By.ID, "dlg-name").send_keys(LIN)
    shot(browser, "3-naming-dialog.png")
    browser.find_element(By.ID, "dlg-enrol").click()
    t_enrolled = time.time()
    wait_for(lambda: LIN in browser.find_element(By.ID, "toast").text, 30, "the enrolment's confirmation", proc)
    people = get_json(f"{base}/api/people")
    assert sorted(p["name"] for p in people) == ["Barack Obama", LIN]
    lin = next(p for p in people if p["name"] == LIN)
    assert lin["photo_count"] >= 1, "the track's best crop is kept as his photo"
    # 4. the running pipeline draws his name (on his next frames: this pass's close-up or the next pass's)
    named = wait_for(lambda: [r for r in rows(log) if r["display_ts"] >= t_enrolled
                              and any(f["name"] == LIN for f in r["faces"])], 30, f"{LIN} named on screen", proc)
    first = named[0]
    lag = first["display_ts"] - t_enrolled
    wait_for(lambda: any(t["name"] == LIN and t["live"] for s in get_json(f"{base}/api/tracks")["streams"]
                         for t in s["tracks"]), 20, f"{LIN} live in /api/tracks", proc)
    time.sleep(1.0)  # the MJPEG picture in the page follows the display within a frame or two
    shot(browser, "4-named-live.png")
    his = (*range(0, 24), *range(82, 211))  # standing small at the start (and the cross-fade), then the close-up
    wrong = [f for r in rows(log) if r["frame"] % CLIP_FRAMES not in his for f in r["faces"] if f["name"] == LIN]
    assert not wrong, f"{LIN} named outside his close-up: {wrong[:3]}"
    print(f"{LIN} enrolled from the page; first frame naming him displayed {lag:.2f} s after the click "
          f"(frame {first['frame']} of the replay)")
    wait_for(lambda: max(r["frame"] for r in rows(log)) >= CLIP_FRAMES, 30, "the clip's second pass (--loop)", proc)
    browser.get(base + "/people")
    wait_for(lambda: LIN in browser.page_source, 10, "the people page", proc)
    wait_for(lambda: browser.execute_script(
        "const i = [...document.querySelectorAll('.thumb img')];"
        "return i.length >= 2 && i.every((x) => x.complete && x.naturalWidth > 0)"), 15, "the photos", proc)
    shot(browser, "5-people-page.png")
    browser.set_window_size(390, 844)  # a phone: one column, the video first, the stats and faces below it
    browser.get(base + "/")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#recent .face img"), 30, "the strip on a phone", proc)
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(browser, "6-phone.png")
    assert proc.poll() is None, "the pipeline stopped"
    # 5. nothing lost: kill -9 the whole pipeline; the enrolment the page got acknowledged is in the gallery
    pids = {proc.pid, *stage_pids(proc.pid).values()}
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    wait_for(lambda: not any(alive(pid) for pid in pids), 20, "every stage to die")
    for name in shm_segments(pids):  # what a SIGKILL leaves behind (no process is left to remove it)
        os.unlink(f"/dev/shm/{name}")
    from app.library import open_library
    from app.settings import Settings

    with open_library(Settings.load(str(obama_env), {})) as library:
        assert not library.running
        assert sorted(p.name for p in library.people()) == ["Barack Obama", LIN]
