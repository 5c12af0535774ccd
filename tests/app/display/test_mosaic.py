"""Several streams on one screen: the mosaic's grid, tiles and scaled boxes; one annotated file per stream."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.display.annotate import Overlay, Renderer
from app.display.mosaic import Mosaic, grid
from app.display.present import OutputOptions, Present, stream_path
from app.types import Faces, FrameRef


def one_face(x1: float, y1: float, x2: float, y2: float, name: str) -> Faces:
    f = Faces(np.array([[x1, y1, x2, y2]], np.float32), np.array([0.9], np.float32),
              np.full((1, 5, 2), ((x1 + x2) / 2, (y1 + y2) / 2), np.float32), track_ids=np.array([7]))
    f.names = [name]
    f.similarities = np.array([0.8], np.float32)
    return f


@pytest.mark.parametrize(("n", "expected"), [(1, (1, 1)), (2, (2, 1)), (3, (2, 2)), (4, (2, 2)), (5, (3, 2)),
                                             (9, (3, 3)), (16, (4, 4)), (17, (5, 4))])
def test_grid_is_the_most_square_that_holds_every_stream(n, expected):
    cols, rows = grid(n)
    assert (cols, rows) == expected and cols * rows >= n


def test_each_stream_lands_in_its_own_tile_with_its_boxes_scaled():
    mosaic = Mosaic({0: "a", 1: "b", 2: "c"}, size=(640, 360))  # 2 x 2 tiles of 320 x 180
    assert mosaic.canvas.shape == (360, 640, 3)
    blue = np.zeros((720, 1280, 3), np.uint8)
    blue[..., 0] = 200
    green = np.zeros((720, 1280, 3), np.uint8)
    green[..., 1] = 200
    mosaic.put(0, blue, None)
    # a face box drawn on a 1280 x 720 frame, shown at a quarter of the size in tile 2 (bottom left)
    mosaic.put(2, green, one_face(400, 200, 800, 600, "obama"), Renderer(show_landmarks=False))
    top_left, top_right, bottom_left = mosaic.canvas[90, 160], mosaic.canvas[90, 480], mosaic.canvas[270, 160]
    assert top_left[0] == 200 and top_left[1] == 0
    assert tuple(top_right) == (0, 0, 0)  # stream 1 has shown nothing yet
    assert bottom_left[1] == 200
    tile = mosaic.canvas[180:, :320]
    box_colour_rows = np.where((np.abs(tile.astype(int) - (0, 200, 0)).sum(axis=2) > 60).any(axis=1))[0]
    # the box's bottom edge sits at 600 / 4 = 150 in the tile, not at 600 (off the tile) or 300
    assert 145 <= box_colour_rows.max() <= 156


def test_compose_draws_the_overlay_on_a_copy():
    mosaic = Mosaic({0: "a", 1: "b"}, size=(640, 360))
    before = mosaic.canvas.copy()
    shown = mosaic.compose(Renderer(), Overlay(["detect 30 fps", "embed 30 fps"]))
    assert np.array_equal(mosaic.canvas, before)
    assert not np.array_equal(shown, before)


def test_stream_paths():
    assert stream_path("out/annotated.mp4", 0, 1) == "out/annotated.mp4"
    assert stream_path("out/annotated.mp4", 3, 4) == "out/annotated-s3.mp4"


def test_two_streams_write_two_files_and_keep_a_mosaic(tmp_path):
    present = Present(OutputOptions(out=str(tmp_path / "a.mp4"), streams={0: "cam0", 1: "cam1"}, fps=10.0,
                                    sink=True))
    assert present.mosaic is not None
    for i in range(6):
        for stream in (0, 1):
            frame = np.full((120, 160, 3), 60 * stream + 20, np.uint8)
            assert present(frame, FrameRef(i, 0.0, stream, i), one_face(10, 10, 60, 80, "x"))
    present.close()
    for stream in (0, 1):
        cap = cv2.VideoCapture(str(tmp_path / f"a-s{stream}.mp4"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert not (tmp_path / "a.mp4").exists()


def test_the_mosaic_is_a_grid_of_the_streams_own_size_shrunk_to_full_hd_at_most():
    from app.display.mosaic import MAX_MOSAIC, mosaic_size

    assert mosaic_size({0: (640, 360), 1: (640, 360)}, 2) == (1280, 360)  # side by side, at their own size
    assert mosaic_size({0: (640, 360), 1: (1280, 720)}, 2) == (1920, 540)  # tiles of the largest, shrunk to fit
    assert mosaic_size({i: (1920, 1080) for i in range(4)}, 4) == MAX_MOSAIC
    assert mosaic_size({}, 3) == MAX_MOSAIC
