"""Summarise ``py-spy record --subprocesses --format raw`` output per pipeline stage.

Each stage process is named by the stage class seen in its stacks; for each, the frames where its on-CPU
samples were taken (self) and the project frames they passed through (inclusive). Used on the GPU machine's
profile (bench/gpu_speed.sh, step ``profile``):

    python bench/pyspy_summary.py out/gpu/pyspy.txt [TOP]
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict

STAGES = ("CaptureStage", "DetectStage", "AlignStage", "EmbedTrackStage", "IdentifyStage", "DisplayStage")


def _parse(line: str) -> tuple[str, list[str], int]:
    """(process, frames, samples) of one collapsed stack."""
    stack, _, count = line.rpartition(" ")
    parts = stack.split(";")
    procs = [p for p in parts if p.startswith("process ")]
    frames = [p for p in parts if not p.startswith(("process ", "thread "))]
    return (procs[-1].split(":")[0] if procs else "?"), frames, int(count)


def summarise(lines: list[str], top: int = 10) -> str:
    rows = [_parse(line) for line in lines if line.strip()]
    stage_of: dict[str, str] = {}
    for proc, frames, _ in rows:
        joined = ";".join(frames)
        stage = next((s for s in STAGES if s in joined), None)
        if stage:
            stage_of[proc] = stage
    total: Counter = Counter()
    own: dict[str, Counter] = defaultdict(Counter)
    through: dict[str, Counter] = defaultdict(Counter)
    for proc, frames, n in rows:
        name = stage_of.get(proc, proc)
        total[name] += n
        if frames:
            own[name][frames[-1]] += n
        for f in set(frames):
            if "app/" in f or "engines/" in f:
                through[name][f] += n
    out = []
    for name, n in total.most_common():
        out.append(f"\n## {name}: {n} samples\n  self:")
        out += [f"   {c:6d} {100 * c / n:5.1f}%  {f[:140]}" for f, c in own[name].most_common(top)]
        out.append("  inclusive (project frames):")
        out += [f"   {c:6d} {100 * c / n:5.1f}%  {f[:140]}" for f, c in through[name].most_common(top)]
    return "\n".join(out)


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        print(summarise(fh.read().splitlines(), int(sys.argv[2]) if len(sys.argv) > 2 else 10))
