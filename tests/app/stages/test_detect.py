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


def test_a_detect_stage_that_aligns_cuts_the_crops_itself_when_its_detector_is_on_the_cpu(checkpoint_dir,
                                                                                         media_dir):
    """The list without an align stage (a GPU was configured) still gets crops should the detector have fallen
    back to the CPU: the stage warps them itself, the same crops the align stage would cut; a frame that was
    overwritten while it was read gives no record and is counted."""
    from types import SimpleNamespace

    import cv2

    from app.stages.detect import DetectStage
    from app.types import Faces, FrameRef
    from engines.align import align_faces

    image = cv2.imread(str(media_dir / "scenes/two_people.jpg"))
    valid, drops = [True, False], []
    ctx = SimpleNamespace(frame_memory=lambda: [], frame_valid=lambda f: valid[f.seq], drop=lambda n=1: drops.append(n))
    stage = DetectStage(DetectConfig.of(Settings(checkpoint_dir=str(checkpoint_dir))), [image.shape[:2]], aligns=True)
    stage.setup(ctx)
    try:
        assert not stage.detect.aligns_on_device
        out = stage.process_batch([image, image], [Faces(frame=FrameRef(0, 1.0)), Faces(frame=FrameRef(1, 2.0))])
    finally:
        stage.teardown()
    [faces] = out
    assert faces.frame == FrameRef(0, 1.0) and len(faces) == 2 and drops == [1]
    assert np.array_equal(faces.crops, align_faces(image, faces.landmarks))
