"""Fixtures: a face library on a fresh gallery, in this process (local) or owned by another process (remote)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.settings import Settings

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def photo_embedder(checkpoint_dir):
    from app.library.photos import PhotoEmbedder

    return PhotoEmbedder(Settings.load(None, environ={"CHECKPOINT_DIR": str(checkpoint_dir)}))


@pytest.fixture(scope="session")
def obama_track(photo_embedder, media_dir) -> np.ndarray:
    """Embeddings of two Obama photos: the 'live track' the remote owner is fed."""
    photos = [(p.name, p.read_bytes()) for p in sorted((media_dir / "people/obama").iterdir())]
    return photo_embedder.embed(photos)


@pytest.fixture
def env_file(tmp_path, checkpoint_dir) -> Path:
    env = tmp_path / ".env"
    env.write_text(f"CHECKPOINT_DIR={checkpoint_dir}\nQDRANT_PATH={tmp_path / 'gallery'}\nLOG_LEVEL=WARNING\n")
    return env


def start_owner(env: Path, tracks: Path | None = None) -> subprocess.Popen:
    """The owner process, once it serves (its stderr is passed through for a failing test to show)."""
    args = [sys.executable, "-m", "tests.app.library.owner_proc", str(env)] + ([str(tracks)] if tracks else [])
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"the owner process did not start (exit {proc.wait()})")
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=10)


@pytest.fixture(params=["local", "remote"])
def library(request, env_file, tmp_path, photo_embedder, obama_track):
    """The library both ways; ``library.running`` says which. The remote owner has track 7 on stream 0 live."""
    from app.control.client import ControlClient
    from app.library import socket_path
    from app.library.client import LocalLibrary, RemoteLibrary

    settings = Settings.load(str(env_file))
    if request.param == "local":
        lib = LocalLibrary(settings, embedder=photo_embedder)
        yield lib
        lib.close()
        return
    np.save(tmp_path / "track.npy", obama_track)
    proc = start_owner(env_file, tmp_path / "track.npy")
    try:
        lib = RemoteLibrary(settings, ControlClient(socket_path(settings), timeout=60), embedder=photo_embedder)
        lib.stop_owner = lambda: stop(proc)
        yield lib
    finally:
        if proc.poll() is None:
            stop(proc)


def wait_for(predicate, timeout: float = 10.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    return predicate()
