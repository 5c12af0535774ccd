"""Secrets never reach the output: stream credentials and the Qdrant API key, on the real error paths."""

import socket
import subprocess
import sys

import pytest


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def run(tmp_path, env_text: str, *args: str) -> subprocess.CompletedProcess:
    env = tmp_path / ".env"
    env.write_text(env_text)
    return subprocess.run([sys.executable, "-m", "app", "--env", str(env), *args], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)


@pytest.mark.timeout(150)
def test_stream_password_is_masked(tmp_path, checkpoint_dir):
    url = f"rtsp://admin:hunter2secret@127.0.0.1:{closed_port()}/stream1"
    proc = run(tmp_path, f"CHECKPOINT_DIR={checkpoint_dir}\nQDRANT_PATH={tmp_path / 'g'}\n", "run", "--headless",
               "--log-tracks", str(tmp_path / "tracks.jsonl"), "--source", url)
    assert proc.returncode == 2
    assert "hunter2secret" not in proc.stdout + proc.stderr
    assert "rtsp://***@127.0.0.1" in proc.stderr and "cannot be reached" in proc.stderr


@pytest.mark.timeout(150)
def test_qdrant_api_key_is_masked_when_the_server_is_unreachable(tmp_path, checkpoint_dir, media_dir):
    proc = run(tmp_path, f"CHECKPOINT_DIR={checkpoint_dir}\nQDRANT_URL=http://127.0.0.1:{closed_port()}\n"
               "QDRANT_API_KEY=sk-very-secret-key-123\n", "people")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "sk-very-secret-key-123" not in out
    assert proc.stderr.strip().splitlines()[-1].startswith("facestream: error: cannot reach Qdrant")
    assert "Traceback" not in out
