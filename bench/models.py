"""Faces/s per backend and batch, detector ms per frame: `python bench/models.py [--backends ...] [--json F]`.

A thin wrapper over `facestream bench models`, so the figures in docs/benchmarks.md come from one script
that anyone can rerun; the first backend listed is the baseline every ratio is taken against.
"""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "models", *sys.argv[1:]]))
