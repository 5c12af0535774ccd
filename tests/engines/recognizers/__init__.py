"""Shared helpers for the recogniser tests: real faces, aligned with the project's own detector."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

PHOTOS = ("people/*/*", "scenes/two_people.jpg")


def photo_paths(media_dir: Path) -> list[Path]:
    return sorted(p for pattern in PHOTOS for p in media_dir.glob(pattern))


@lru_cache(maxsize=2)
def aligned_people(media_dir: Path, checkpoint_dir: Path) -> np.ndarray:
    """(N, 112, 112, 3) uint8 BGR crops of every face in the people photos and two_people.jpg."""
    from engines.align import align_faces
    from engines.model_zoo import load_detector

    detector = load_detector("retinaface_mnet025", checkpoint_dir=checkpoint_dir, device="cpu")
    images = [cv2.imread(str(p)) for p in photo_paths(media_dir)]
    crops = [align_faces(img, detector.detect(img).landmarks) for img in images]
    out = np.concatenate(crops)
    out.setflags(write=False)
    return out
