"""Benchmark clips derived from the shared 640x360 clip (the only video we have), made with FFmpeg/libx264.

* ``720p``: the clip scaled to 1280x720 (1–7 faces a frame), for the CPU target.
* ``1080p``: a 2x2 grid of the clip at 960x540 per tile, each tile starting at another point of the clip
  (so a frame holds up to four scenes: several faces per frame), 1920x1080, ``--frames`` long (looped).

    python bench/media.py 720p  out/bench-media/clip720.mp4
    python bench/media.py 1080p out/bench-media/grid1080.mp4 --frames 900

Never committed: they are made on demand (seconds) and the shared clip stays the single source of truth.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared/media/video/short_hamilton_clip.mp4"
OFFSETS = (0.0, 2.3, 4.6, 6.9)  # seconds into the 9.2 s clip where each grid tile starts


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        sys.exit("bench/media.py: ffmpeg not found: install it (apt install ffmpeg)")
    return exe


def _encode(args: list[str], dst: Path, crf: int) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.part{dst.suffix}")
    cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", *args, "-c:v", "libx264", "-preset", "medium",
           "-crf", str(crf), "-pix_fmt", "yuv420p", "-an", str(tmp)]
    subprocess.run(cmd, check=True)
    tmp.replace(dst)
    return dst


def make_720p(dst: Path, src: Path = CLIP) -> Path:
    return _encode(["-i", str(src), "-vf", "scale=1280:720:flags=lanczos"], dst, crf=20)


def make_1080p_grid(dst: Path, frames: int = 900, src: Path = CLIP) -> Path:
    inputs: list[str] = []
    for t in OFFSETS:
        inputs += ["-stream_loop", "-1", "-ss", f"{t}", "-i", str(src)]
    scale = ";".join(f"[{k}:v]scale=960:540:flags=lanczos,setpts=PTS-STARTPTS[t{k}]" for k in range(4))
    graph = f"{scale};[t0][t1][t2][t3]xstack=inputs=4:layout=0_0|w0_0|0_h0|w0_h0[v]"
    return _encode([*inputs, "-filter_complex", graph, "-map", "[v]", "-frames:v", str(frames), "-r", "30"],
                   dst, crf=23)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=("720p", "1080p"))
    ap.add_argument("dst", type=Path)
    ap.add_argument("--frames", type=int, default=900, help="length of the 1080p grid clip")
    ap.add_argument("--src", type=Path, default=CLIP)
    args = ap.parse_args(argv)
    out = make_720p(args.dst, args.src) if args.kind == "720p" else make_1080p_grid(args.dst, args.frames, args.src)
    print(f"{out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
