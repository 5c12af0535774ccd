"""A live source that really drops: the MJPEG server is taken down and brought back on the same port while
`facestream run --live` reads it. Capture must reconnect (backoff capped at RECONNECT_MAX_DELAY=1 s), no
other stage may exit, frames must flow again after every outage, the overlay must say "reconnecting" while
the source is down, and Ctrl-C must end it all (exit 130, no shared memory left)."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from tests.app.faults.servers import (
    MjpegSource,
    encode_video,
    fault_env,
    free_port,
    grab_jpeg,
    lines,
    live_run,
    red_pixels,
    shm_segments,
    stage_pids,
    start_run,
    stderr_of,
    wait_for,
)

STAGES = {"capture", "detect", "align", "embed+track", "identify", "display"}


@pytest.fixture(scope="module")
def clip_jpegs(media_dir):
    return encode_video(media_dir / "video/short_hamilton_clip.mp4")


def survive_outages(enrolled_env, clip_jpegs, tmp_path, outages: int, down: float) -> None:
    before = shm_segments()
    env = fault_env(enrolled_env, tmp_path, RECONNECT_MAX_DELAY=1)
    log, serve = tmp_path / "tracks.jsonl", free_port()
    src = MjpegSource(clip_jpegs, fps=30).start()
    with live_run(env, src, "--headless", "--live", "--log-tracks", str(log), "--serve", str(serve)) as proc:
        wait_for(lambda: lines(log) >= 20, 90, "the first 20 frames", proc)
        pids = stage_pids(proc.pid)
        assert set(pids) == STAGES, pids
        live_frame = grab_jpeg(f"http://127.0.0.1:{serve}/stream.mjpg", skip=1)
        outage_times = []
        for k in range(outages):
            src.stop()
            t0 = time.monotonic()
            time.sleep(down)
            if k == 0:  # the overlay says so while nothing flows (redrawn on the last frame)
                down_frame = grab_jpeg(f"http://127.0.0.1:{serve}/stream.mjpg", skip=1)
                assert red_pixels(down_frame) > 5 * max(red_pixels(live_frame), 20), "no red 'reconnecting' line"
            assert stage_pids(proc.pid) == pids, f"a stage exited or was replaced during outage {k + 1}"
            n = lines(log)
            src.start()
            wait_for(lambda n=n: lines(log) >= n + 15, 30, f"frames after outage {k + 1}", proc)
            outage_times.append(time.monotonic() - t0)
        print(f"{outages} outages of {down} s: 15 frames again {min(outage_times) - down:.2f}–"
              f"{max(outage_times) - down:.2f} s after the server came back")
        assert stage_pids(proc.pid) == pids  # the very same processes: nothing was restarted
        # back within down time + the 1 s backoff cap + 15 frames at ~20 fps (and slack for a loaded CI box)
        assert max(outage_times) < down + 1.0 + 5.0, outage_times
        assert src.connections >= outages + 1  # capture really reconnected each time
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130, stderr_of(env)
    err = stderr_of(env)
    assert err.count("reconnecting with backoff") >= outages, err
    assert "interrupted:" in err
    assert "died" not in err and "Traceback" not in err, err
    assert shm_segments() <= before  # every segment of this run unlinked


@pytest.mark.timeout(150)
def test_capture_reconnects_after_five_outages(enrolled_env, clip_jpegs, tmp_path):
    survive_outages(enrolled_env, clip_jpegs, tmp_path, outages=5, down=1.0)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_capture_reconnects_after_ten_longer_outages(enrolled_env, clip_jpegs, tmp_path):
    survive_outages(enrolled_env, clip_jpegs, tmp_path, outages=10, down=2.5)


@pytest.mark.timeout(120)
def test_file_source_that_ends_ends_the_run(enrolled_env, media_dir, tmp_path):
    """A file is not a live source: its end is the end of the run (exit 0, every frame, nothing left)."""
    import cv2

    before = shm_segments()
    clip = tmp_path / "short.avi"
    cap = cv2.VideoCapture(str(media_dir / "video/short_hamilton_clip.mp4"))
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    for _ in range(40):
        ok, frame = cap.read()
        assert ok
        out.write(frame)
    out.release()
    cap.release()
    env, log = fault_env(enrolled_env, tmp_path, RECONNECT_MAX_DELAY=1), tmp_path / "tracks.jsonl"
    proc = start_run(env, "--headless", "--log-tracks", str(log), "--source", str(clip))
    assert proc.wait(100) == 0, stderr_of(env)
    assert "finished: 40 frames" in stderr_of(env)
    assert lines(log) == 40 and np.all(np.diff([int(s.split(",")[0].split(":")[1]) for s in
                                                log.read_text().splitlines()]) == 1)
    assert shm_segments() <= before
