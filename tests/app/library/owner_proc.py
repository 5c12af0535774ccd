"""A gallery owner in its own process, as the identify stage runs one: ``python -m tests.app.library.owner_proc
ENV_FILE [TRACKS.npy]``. With TRACKS, each row is fed as one frame of track 7 on stream 0 (a live track to enrol
or correct). Prints ``ready`` once serving, then waits to be killed."""

from __future__ import annotations

import sys
import time

import numpy as np

from app.library.serve import serve_library
from app.settings import Settings
from app.stages.identify import Identify
from app.types import Faces

TRACK = 7


def main(env: str, tracks: str | None = None) -> None:
    settings = Settings.load(env)
    identify = Identify(settings)
    if tracks:
        for row in np.load(tracks):
            identify(Faces(np.array([[0, 0, 50, 50]], np.float32), np.array([0.9], np.float32),
                           np.zeros((1, 5, 2), np.float32), track_ids=np.array([TRACK]),
                           embeddings=row[None].astype(np.float32), query=np.array([0])))
    if serve_library(identify, settings) is None:
        sys.exit("another owner serves this gallery")
    print("ready", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main(*sys.argv[1:])
