"""A stage process dies (SIGKILL, as the OOM killer would do it) in a live run: the supervisor restarts it and
frames flow again; past the bound (STAGE_RESTARTS per minute, default 3) the run ends with one line naming the
stage, a non-zero exit and no shared memory left. The gallery is untouched (no enrolled face lost)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.app.faults.servers import (
    MjpegSource,
    encode_video,
    fault_env,
    lines,
    live_run,
    shm_segments,
    stage_pids,
    stderr_of,
    wait_for,
)

ENROLLED = ["alex_lacamoire", "biden", "kit_harington", "lin_manuel_miranda", "obama", "rose_leslie"]


def kill_and_wait_restart(proc, log, stage: str, need_frames: int = 15) -> int:
    old = stage_pids(proc.pid)[stage]
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: (p := stage_pids(proc.pid).get(stage)) != old and p, 60, f"{stage} restarted", proc)
    n = lines(log)
    wait_for(lambda: lines(log) >= n + need_frames, 60, f"frames after {stage} restarted", proc)
    print(f"{stage} SIGKILLed: {need_frames} frames again after {time.monotonic() - t0:.2f} s")
    return new


@pytest.mark.timeout(170)
def test_killed_stages_restart_until_the_bound(enrolled_env, media_dir, tmp_path):
    before = shm_segments()
    env = fault_env(enrolled_env, tmp_path, RECONNECT_MAX_DELAY=1, STAGE_RESTARTS=3)  # 3 is also the default
    log = tmp_path / "tracks.jsonl"
    src = MjpegSource(encode_video(media_dir / "video/short_hamilton_clip.mp4"), fps=30).start()
    with live_run(env, src, "--headless", "--live", "--log-tracks", str(log)) as proc:
        wait_for(lambda: lines(log) >= 20, 90, "the first 20 frames", proc)
        first = stage_pids(proc.pid)
        # identify owns the embedded gallery: a restart must reopen it; and detect, the busiest stage
        kill_and_wait_restart(proc, log, "identify")
        for _ in range(3):  # the bound: 3 restarts per minute
            kill_and_wait_restart(proc, log, "detect")
        others = {k: v for k, v in stage_pids(proc.pid).items() if k not in ("detect", "identify")}
        assert others == {k: v for k, v in first.items() if k not in ("detect", "identify")}  # untouched
        os.kill(stage_pids(proc.pid)["detect"], signal.SIGKILL)  # the 4th within a minute: over the bound
        code = proc.wait(60)
    err = stderr_of(env)
    assert code == 1, err
    assert err.strip().splitlines()[-1] == "facestream: error: stage detect died (killed by SIGKILL)", err
    assert err.count("restarting it") == 4, err
    assert shm_segments() <= before
    people = subprocess.run([sys.executable, "-m", "app", "--env", str(env), "people"], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert all(name in people.stdout for name in ENROLLED), people.stdout  # no enrolled face lost
