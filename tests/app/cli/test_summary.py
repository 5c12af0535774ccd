"""The line a run ends with names what it wrote, and only that."""

from __future__ import annotations

import os
import time

from app.cli.summary import end_line, written_files
from app.display.present import OutputOptions


def test_written_files_are_this_runs_non_empty_outputs(tmp_path):
    started = time.time()
    out, log = tmp_path / "out.mp4", tmp_path / "tracks.jsonl"
    options = OutputOptions(out=str(out), log_tracks=str(log), streams={0: "a", 1: "b"})
    (tmp_path / "out-s0.mp4").write_bytes(b"video")
    (tmp_path / "out-s1.mp4").write_bytes(b"")  # opened, never written: not claimed
    log.write_text("{}\n")
    os.utime(log, (started - 3600, started - 3600))  # a file of the same name from an earlier run: not claimed
    assert written_files(options, started) == [str(tmp_path / "out-s0.mp4")]
    os.utime(log, None)
    assert written_files(options, started) == [str(tmp_path / "out-s0.mp4"), str(log)]
    assert written_files(OutputOptions(), started) == []


def test_end_line_says_how_the_run_ended():
    assert end_line("finished", 275, 9.1, 0, ["o.mp4", "t.jsonl"]) == (
        "facestream: finished: 275 frames in 9.1 s (30.2 fps), 0 dropped; wrote o.mp4, t.jsonl")
    assert end_line("interrupted", 0, 0.0, 3, []) == (
        "facestream: stopped (Ctrl-C): 0 frames in 0.0 s (0.0 fps), 3 dropped")
    assert end_line("terminated", 1, 1.0, 0, []).startswith("facestream: stopped (SIGTERM): ")
