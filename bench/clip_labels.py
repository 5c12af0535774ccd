"""Who is on screen in the shared labelled clip, and the check that a run named only them, frame by frame.

Shared by the pipeline test (``tests/app/test_pipeline_video.py``) and the GPU speed script (``bench/gpu_speed.sh``,
which checks a STRICT_GPU run with it). Ground truth: ../shared/media/README.md (cuts at frames 82 and 211).
A failed check raises AssertionError naming the frames.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

# who is on screen, by OpenCV frame number (../shared/media/README.md; cuts at 82 and 211, cross-fade 21-23)
ON_SCREEN = [(0, 23, {"lin_manuel_miranda", "alex_lacamoire"}), (24, 81, {"alex_lacamoire"}),
             (82, 210, {"lin_manuel_miranda"}), (211, 274, {"obama"})]


def on_screen(frame: int) -> set[str]:
    return next(people for lo, hi, people in ON_SCREEN if lo <= frame <= hi)


def named_per_frame(log: Path, stream: int | None = None) -> dict[int, list[str]]:
    """{frame: the people named on its faces} from a --log-tracks file (one stream's, if given). A person is
    their stable id (the enrolled folder's name) where the log has one, else the name shown."""
    frames: dict[int, list[str]] = {}
    for line in log.read_text().splitlines():
        row = json.loads(line)
        if stream is not None and row["stream"] != stream:
            continue
        frames[row["frame"]] = [face.get("person_id") or face["name"] for face in row["faces"]
                                if face["name"] != "unknown"]
    return frames


def check_labels(frames: dict[int, list[str]]) -> None:
    """Per frame and per face: nobody is named who is not on screen (0 false names), no name is on two faces
    of one frame, Lin-Manuel Miranda is named through his close-up and Barack Obama through the audience."""
    assert sorted(frames) == list(range(275))
    false = [(f, p) for f, people in frames.items() for p in people if p not in on_screen(f)]
    assert not false, f"named as someone not on screen (frame, name): {false}"
    twice = [(f, p) for f, people in frames.items() for p, n in Counter(people).items() if n > 1]
    assert not twice, f"one name on two faces of a frame (frame, name): {twice}"
    lin = sum("lin_manuel_miranda" in frames[f] for f in range(88, 206))
    assert lin >= 0.8 * 118, f"Lin-Manuel named on {lin} of the 118 frames 88-205"
    obama = sum("obama" in frames[f] for f in range(216, 271))
    assert obama >= 0.5 * 55, f"Obama named on {obama} of the 55 frames 216-270"
