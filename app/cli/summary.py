"""The one line a run ends with: how it ended, how much it did, and the files it wrote.

Both the multi-process pipeline and ``--single-process`` end with it, so a user (or a script reading the last
line) sees the same thing whichever ran.
"""

from __future__ import annotations

import os
from pathlib import Path

from app.display.present import OutputOptions, stream_path

#: a run's end reason (PipelineResult.reason) as the user reads it: Ctrl-C or SIGTERM is a stop, not an error
WORDS = {"finished": "finished", "stopped": "stopped", "timeout": "stopped (time limit)",
         "interrupted": "stopped (Ctrl-C)", "terminated": "stopped (SIGTERM)", "failed": "failed"}


def written_files(options: OutputOptions, since: float) -> list[str]:
    """The files this run wrote (its videos, one per stream, and its track log): only those that exist, are not
    empty and were modified since ``since`` (a wall-clock time), so an old file of the same name is never claimed."""
    streams = len(options.streams)
    paths = [stream_path(options.out, s, streams) for s in options.streams] if options.out else []
    if options.log_tracks:
        paths.append(options.log_tracks)
    found = []
    for p in paths:
        try:
            st = os.stat(p)
            if st.st_size and st.st_mtime >= since - 1.0:  # 1 s: file systems with coarse timestamps
                found.append(str(Path(p)))
        except OSError:
            continue
    return found


def end_line(reason: str, frames: int, seconds: float, drops: int, files: list[str], blind: float = 0.0) -> str:
    """``facestream: finished: 275 frames in 9.1 s (30.2 fps), 0 dropped; wrote out.mp4, tracks.jsonl``; ``blind``:
    seconds the gallery server was unreachable (names could not be asked for meanwhile)."""
    fps = frames / seconds if seconds > 0 else 0.0
    line = (f"facestream: {WORDS.get(reason, reason)}: {frames} frames in {seconds:.1f} s ({fps:.1f} fps), "
            f"{drops} dropped" + (f", ran blind {blind:.1f} s (gallery server unreachable)" if blind else ""))
    return line + (f"; wrote {', '.join(files)}" if files else "")


def time_to_name_line(ttn) -> str | None:
    """``facestream: time to name: first detected → named p50 120 ms, p95 300 ms, max 410 ms (2 tracks); →
    person.appeared published p50 …; 3 tracks never named`` (app.observe.time_to_name); None with no track."""
    named, published = ttn.capture(), ttn.publish()
    if named is None and not ttn.unnamed:
        return None
    parts = []
    for label, p in (("first detected → named", named), ("→ person.appeared published", published)):
        if p is not None:
            parts.append(f"{label} p50 {p.p50 * 1000:.0f} ms, p95 {p.p95 * 1000:.0f} ms, max {p.max * 1000:.0f} ms "
                         f"({p.count} track{'s' * (p.count != 1)})")
    if ttn.unnamed:
        parts.append(f"{len(ttn.unnamed)} track{'s' * (len(ttn.unnamed) != 1)} never named")
    return "facestream: time to name: " + "; ".join(parts)
