"""Fixtures for application tests: a gallery with the shared people enrolled through the real CLI."""

from __future__ import annotations

import socket

import pytest

from app.cli import main


@pytest.fixture(scope="session")
def enrolled_env(tmp_path_factory, checkpoint_dir, media_dir):
    root = tmp_path_factory.mktemp("run")
    env = root / ".env"
    env.write_text(f"CHECKPOINT_DIR={checkpoint_dir}\nQDRANT_PATH={root / 'gallery'}\nLOG_LEVEL=WARNING\n")
    assert main(["--env", str(env), "enrol", "--folder", str(media_dir / "people")]) == 0
    return env


@pytest.fixture
def closed_url() -> str:
    """A URL nothing listens on: connection refused, at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
