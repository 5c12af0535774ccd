"""The whole program on the shared video, as a user runs it: enrol the shared people, then `facestream run`.

Names are checked per frame and per face against who is on screen (../shared/media/README.md): a name on a
face whose person is not in that frame is the worst bug this product can have, even for one frame. The clip's
ground truth and the check live in ``bench/clip_labels.py`` (the GPU speed script checks a GPU run with it too).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.clip_labels import check_labels, named_per_frame

ENROLLED = {"alex_lacamoire", "biden", "kit_harington", "lin_manuel_miranda", "obama", "rose_leslie"}


def shm_segments() -> set[str]:
    return {n for n in os.listdir("/dev/shm") if n.startswith("fs_")}


def leaked_segments(before: set[str]) -> set[str]:
    """fs_<pid>_* segments new since ``before`` whose creating process has exited: what a finished run left
    behind. Segments of live processes belong to other runs on the machine (parallel test sessions)."""
    return {n for n in shm_segments() - before if not Path(f"/proc/{n.split('_')[1]}").exists()}


def run_cli(env: Path, *args: str, timeout: float = 240, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", "--env", str(env), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=env.parent, env={**os.environ, **settings})


def check_cuts(log: Path, stream: int | None = None) -> None:
    """Capture's scene signal reached embed+track: on each cut of the clip (20, into the cross-fade; 82; 211)
    every face that can start a track (score >= TRACK_THRESH + 0.1; 0.61 leaves room for the log's rounding)
    is tracked at once, under a new id (none continues a track of the frame before)."""
    ids: dict[int, list[int]] = {}
    for line in log.read_text().splitlines():
        row = json.loads(line)
        if stream is None or row["stream"] == stream:
            ids[row["frame"]] = [face["track_id"] for face in row["faces"] if face["score"] >= 0.61]
    for cut in (20, 82, 211):
        assert ids[cut] and -1 not in ids[cut], f"frame {cut}: track ids {ids[cut]}"
        assert not set(ids[cut]) & set(ids[cut - 1]), f"a track id continues across the cut at {cut}"


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("interval", ["1", "3"])
def test_run_headless_names_the_enrolled_people(enrolled_env, media_dir, tmp_path, interval):
    """Every EMBED_INTERVAL: at 3 a face is embedded every third frame, and the cut at 211 still ends Lin's
    name on the face that took his box."""
    before = shm_segments()
    out, log = tmp_path / "annotated.mp4", tmp_path / "tracks.jsonl"
    proc = run_cli(enrolled_env, "run", "--source", str(media_dir / "video/short_hamilton_clip.mp4"),
                   "--headless", "--out", str(out), "--log-tracks", str(log), EMBED_INTERVAL=interval)
    assert proc.returncode == 0, proc.stderr
    assert "finished: 275 frames" in proc.stderr and "0 dropped" in proc.stderr
    assert not leaked_segments(before)  # every shared-memory segment was unlinked

    import cv2

    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 275  # every frame processed and annotated
    assert len(log.read_text().splitlines()) == 275
    check_labels(named_per_frame(log))
    check_cuts(log)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_streams_batch_together_and_keep_their_own_tracks_and_files(enrolled_env, media_dir, tmp_path):
    """Two sources in one pipeline (the second a copy of the clip): each stream keeps every frame, its own
    tracker (labels right on both) and its own annotated file; EMBED_INTERVAL=3 embeds a face every 3rd frame
    and must not cost a name."""
    clip = media_dir / "video/short_hamilton_clip.mp4"
    copy = tmp_path / "second.mp4"
    copy.write_bytes(clip.read_bytes())
    out, log = tmp_path / "annotated.mp4", tmp_path / "tracks.jsonl"
    before = shm_segments()
    proc = run_cli(enrolled_env, "run", "--source", f"{clip},{copy}", "--headless", "--out", str(out),
                   "--log-tracks", str(log), timeout=360, EMBED_INTERVAL="3")
    assert proc.returncode == 0, proc.stderr
    assert "finished: 550 frames" in proc.stderr and "0 dropped" in proc.stderr
    assert not leaked_segments(before)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    for stream in (0, 1):
        frames = [r["frame"] for r in rows if r["stream"] == stream]
        assert frames == list(range(275)), f"stream {stream}: frames out of order or missing"
        check_labels(named_per_frame(log, stream))
        check_cuts(log, stream)

    import cv2

    for stream in (0, 1):
        cap = cv2.VideoCapture(str(tmp_path / f"annotated-s{stream}.mp4"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 275
    ids = [{f["track_id"] for r in rows if r["stream"] == s for f in r["faces"] if f["track_id"] >= 0} for s in (0, 1)]
    assert not ids[0] & ids[1], "a track id was shown on both streams"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_single_process_loop_gives_the_same_names(enrolled_env, media_dir, tmp_path):
    log = tmp_path / "tracks.jsonl"
    proc = run_cli(enrolled_env, "run", "--single-process", "--headless", "--log-tracks", str(log),
                   "--source", str(media_dir / "video/short_hamilton_clip.mp4"))
    assert proc.returncode == 0, proc.stderr
    check_labels(named_per_frame(log))
    check_cuts(log)


@pytest.mark.timeout(120)
def test_bad_source_is_one_line_and_leaves_nothing(enrolled_env, tmp_path):
    before = shm_segments()
    proc = run_cli(enrolled_env, "run", "--headless", "--source", str(tmp_path / "missing.mp4"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"facestream: error: VIDEO_SOURCE file not found: {tmp_path / 'missing.mp4'} — check the path in .env"]
    assert not leaked_segments(before)


@pytest.mark.timeout(120)
def test_strict_gpu_without_a_gpu_stops_at_start_with_one_line(enrolled_env, media_dir, tmp_path):
    env = tmp_path / ".env"
    env.write_text(enrolled_env.read_text() + "STRICT_GPU=true\nDETECTOR_BACKEND=pytorch\nEMBEDDING_BACKEND=pytorch\n")
    before = shm_segments()
    proc = run_cli(env, "run", "--headless", "--log-tracks", str(tmp_path / "tracks.jsonl"),
                   "--source", str(media_dir / "video/short_hamilton_clip.mp4"))
    assert proc.returncode == 1
    assert "restarting" not in proc.stderr  # a configuration error is not retried
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("facestream: error: stage ") and "STRICT_GPU=true" in last and "Traceback" not in proc.stderr
    assert not leaked_segments(before)


# -- how a run ends: Ctrl-C, a stage dying (issue #12, "fail clearly, once") ------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ctrl_c_ends_with_stopped_and_the_files_written(enrolled_env, media_dir, tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) is a stop the user asked for: exit 130 (the
    shell's convention for SIGINT, so scripts can tell), a last line saying "stopped" and naming what was
    written, no error line, no shared memory left."""
    import signal

    from tests.app.faults.servers import fault_env, lines, shm_segments, start_run, stderr_of, wait_for

    env = fault_env(enrolled_env, tmp_path)
    log = tmp_path / "tracks.jsonl"
    proc = start_run(env, "--realtime", "--headless", "--log-tracks", str(log), "--source",
                     str(media_dir / "video/short_hamilton_clip.mp4"))
    try:
        wait_for(lambda: lines(log) >= 10, 120, "the first 10 frames", proc)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = stderr_of(env)
    assert code == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("facestream: stopped (Ctrl-C): ") and last.endswith(f"; wrote {log}"), err
    assert "error" not in err and "Traceback" not in err, err
    assert not shm_segments([proc.pid])


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_stage_that_dies_is_reported_once(enrolled_env, media_dir, tmp_path):
    import signal

    from tests.app.faults.servers import fault_env, lines, shm_segments, stage_pids, start_run, stderr_of, wait_for

    env = fault_env(enrolled_env, tmp_path, STAGE_RESTARTS=0)
    log = tmp_path / "tracks.jsonl"
    proc = start_run(env, "--realtime", "--headless", "--log-tracks", str(log), "--source",
                     str(media_dir / "video/short_hamilton_clip.mp4"))
    try:
        wait_for(lambda: lines(log) >= 10, 120, "the first 10 frames", proc)
        os.kill(stage_pids(proc.pid)["detect"], signal.SIGKILL)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = stderr_of(env)
    assert code == 1, err
    assert err.count("stage detect died") == 1, err
    end = err.strip().splitlines()[-2:]
    assert end[0].startswith("facestream: failed: ") and end[0].endswith(f"; wrote {log}"), err
    assert end[1] == "facestream: error: stage detect died (killed by SIGKILL)", err
    assert not shm_segments([proc.pid])
