"""Detect: MIN_FACE drops small faces, and with GPU-cut crops the same rows of the crops."""

from __future__ import annotations

import numpy as np

from app.settings import Settings
from app.stages.detect import Detect, DetectConfig
from engines.types import Detections


def test_min_face_drops_the_same_rows_from_detections_and_their_crops(checkpoint_dir):
    detect = Detect(DetectConfig.of(Settings(checkpoint_dir=str(checkpoint_dir), min_face=40)))
    widths = np.array([10.0, 80.0, 39.0, 40.0])
    boxes = np.stack([np.zeros(4), np.zeros(4), widths, widths + 5], axis=1).astype(np.float32)
    dets = [Detections(boxes, np.linspace(0.9, 0.6, 4, dtype=np.float32), np.zeros((4, 5, 2), np.float32)),
            Detections(boxes[:0], np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))]
    crops = [np.arange(4, dtype=np.uint8)[:, None, None, None] * np.ones((4, 112, 112, 3), np.uint8),
             np.zeros((0, 112, 112, 3), np.uint8)]
    kept, kept_crops = detect._filter(dets, crops)
    assert kept[0].boxes[:, 2].tolist() == [80.0, 40.0] and len(kept[1]) == 0
    assert kept_crops[0][:, 0, 0, 0].tolist() == [1, 3] and kept_crops[1].shape == (0, 112, 112, 3)
    assert [len(d) for d in detect._filter(dets)] == [2, 0]  # without crops: the detections alone
