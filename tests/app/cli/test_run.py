"""`facestream run`'s checks before anything runs, and its lines when the source or the backend is not usable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engines.backends.cuda_probe import cuda_gpus

CLIP = "video/short_hamilton_clip.mp4"
NO_OUTPUT = ("with no output would run and keep nothing: add --out FILE.mp4, --serve PORT or --log-tracks FILE (or "
             "OUTPUT / SERVE_PORT in .env; DISPLAY_MODE=none to run with no output on purpose)")


def shm_segments() -> set[str]:
    return {n for n in os.listdir("/dev/shm") if n.startswith("fs_")}


@pytest.fixture
def env(tmp_path, checkpoint_dir) -> Path:
    env = tmp_path / ".env"
    env.write_text(f"CHECKPOINT_DIR={checkpoint_dir}\nQDRANT_PATH={tmp_path / 'gallery'}\nLOG_LEVEL=WARNING\n")
    return env


def clean_environ(**settings: str) -> dict[str, str]:
    """This environment without OpenCV's and FFmpeg's log settings (an in-process `main()` in an earlier test sets
    them here): the program under test must quiet them itself."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}, **settings}


def run(env: Path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", "--env", str(env), "run", *args], capture_output=True,
                          text=True, timeout=240, cwd=env.parent, env=clean_environ(**settings))


@pytest.mark.timeout(60)
def test_headless_with_no_output_is_an_error_not_a_silent_run(env, media_dir):
    proc = run(env, "--headless", "--source", str(media_dir / CLIP))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"facestream: error: --headless {NO_OUTPUT}"]


@pytest.mark.timeout(60)
def test_display_mode_headless_with_no_output_is_the_same_error(env, media_dir):
    proc = run(env, "--source", str(media_dir / CLIP), DISPLAY_MODE="headless")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"facestream: error: DISPLAY_MODE=headless {NO_OUTPUT}"]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_display_mode_none_runs_with_no_output_on_purpose(env, media_dir):
    env.write_text(env.read_text() + "MATCH_THRESH=0.8\n")
    proc = run(env, "--max-frames", "3", "--source", str(media_dir / CLIP), DISPLAY_MODE="none")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("facestream: finished: 3 frames in ")
    assert "wrote" not in proc.stderr
    # settings reach every stage process: the old key's warning is still said once, by the parent
    assert proc.stderr.count("MATCH_THRESH is now TRACK_MATCH_THRESH") == 1, proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ctrl_c_in_the_single_process_loop_ends_with_stopped(env, media_dir, tmp_path):
    import signal
    import time

    log = tmp_path / "tracks.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "app", "--env", str(env), "run", "--single-process", "--headless",
                             "--log-tracks", str(log), "--source", str(media_dir / CLIP)], stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        while (not log.exists() or log.read_text().count("\n") < 5) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    last = err.splitlines()[-1]
    assert last.startswith("facestream: stopped (Ctrl-C): ") and last.endswith(f"; wrote {log}"), err
    assert "error" not in err, err


@pytest.mark.timeout(60)
def test_a_missing_source_is_said_before_the_missing_output(env, tmp_path):
    proc = run(env, "--headless", "--source", str(tmp_path / "missing.mp4"))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"facestream: error: VIDEO_SOURCE file not found: {tmp_path / 'missing.mp4'} — check the path in .env"]


@pytest.mark.timeout(120)
def test_a_truncated_video_is_our_one_line_without_ffmpeg_or_opencv_lines(env, media_dir, tmp_path):
    clip = tmp_path / "truncated.mp4"
    clip.write_bytes((media_dir / CLIP).read_bytes()[:200_000])  # no moov atom: FFmpeg and OpenCV both complain
    before = shm_segments()
    proc = run(env, "--headless", "--out", str(tmp_path / "out.mp4"), "--source", str(clip))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"facestream: error: VIDEO_SOURCE file {clip} cannot be decoded (corrupt, truncated or not a video): "
        "check it plays, e.g. with ffprobe"]
    assert not (tmp_path / "out.mp4").exists() and shm_segments() == before


@pytest.mark.timeout(120)
def test_debug_keeps_the_video_libraries_own_lines(env, media_dir, tmp_path):
    clip = tmp_path / "truncated.mp4"
    clip.write_bytes((media_dir / CLIP).read_bytes()[:200_000])
    proc = subprocess.run([sys.executable, "-m", "app", "--env", str(env), "--debug", "run", "--headless", "--out",
                           str(tmp_path / "out.mp4"), "--source", str(clip)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=clean_environ())
    assert proc.returncode != 0
    assert "moov atom not found" in proc.stderr  # --debug: everything, for whoever is chasing it


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.skipif(cuda_gpus() > 0, reason="a CUDA GPU is here: TensorRT is tried for real")
def test_tensorrt_without_a_gpu_says_so_and_runs_on_onnxruntime(env, media_dir, tmp_path):
    log = tmp_path / "tracks.jsonl"
    proc = run(env, "--headless", "--max-frames", "5", "--log-tracks", str(log), "--source", str(media_dir / CLIP),
               EMBEDDING_BACKEND="tensorrt", DETECTOR_BACKEND="tensorrt")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[:2] == [
        f"facestream: warning: {key}=tensorrt needs an NVIDIA GPU and this machine has none: using onnxruntime on "
        "the CPU (the default) instead" for key in ("DETECTOR_BACKEND", "EMBEDDING_BACKEND")]
    assert lines[2].startswith("facestream: finished: 5 frames in ") and lines[2].endswith(f"; wrote {log}")
    assert len(lines) == 3 and "pycuda" not in proc.stderr and "pytorch" not in proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_single_process_run_ends_with_the_line_naming_its_files(env, media_dir, tmp_path):
    out, log = tmp_path / "annotated.avi", tmp_path / "tracks.jsonl"
    old = tmp_path / "old.jsonl"
    shutil.copy(media_dir / "README.md", old)
    proc = run(env, "--single-process", "--headless", "--max-frames", "5", "--out", str(out), "--log-tracks", str(log),
               "--source", str(media_dir / CLIP))
    assert proc.returncode == 0, proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("facestream: finished: 5 frames in ") and last.endswith(f"; wrote {out}, {log}")


@pytest.mark.skipif(cuda_gpus() > 0, reason="a CUDA GPU is here")
def test_without_gpu_moves_only_the_tensorrt_stages_to_onnxruntime_on_the_cpu(capsys):
    from app.cli.common import without_gpu
    from app.settings import Settings

    s = without_gpu(Settings(detector_backend="pytorch", embedding_backend="tensorrt", device="cuda"))
    assert (s.detector_backend, s.embedding_backend, s.device) == ("pytorch", "onnxruntime", "cpu")
    assert capsys.readouterr().err.splitlines() == [
        "facestream: warning: EMBEDDING_BACKEND=tensorrt needs an NVIDIA GPU and this machine has none: using "
        "onnxruntime on the CPU (the default) instead"]
    strict = Settings(embedding_backend="tensorrt", strict_gpu=True)
    assert without_gpu(strict) is strict  # STRICT_GPU=true: fail at start-up, as asked


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.skipif(cuda_gpus() > 0, reason="a CUDA GPU is here: STRICT_GPU is satisfied")
def test_a_stage_refusing_to_start_is_said_once(env, media_dir, tmp_path):
    proc = run(env, "--headless", "--log-tracks", str(tmp_path / "tracks.jsonl"), "--source", str(media_dir / CLIP),
               STRICT_GPU="true", DETECTOR_BACKEND="pytorch", EMBEDDING_BACKEND="pytorch")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("STRICT_GPU=true but") == 1, proc.stderr  # not by the stage and again by the CLI
    lines = proc.stderr.splitlines()
    assert lines[-2].startswith("facestream: failed: 0 frames in ") and "wrote" not in lines[-2]  # empty log: not
    assert lines[-1].startswith("facestream: error: stage ") and "STRICT_GPU=true but" in lines[-1]
