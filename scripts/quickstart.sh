#!/usr/bin/env bash
# Fresh machine → annotated video: set up, enrol the shared people, run the pipeline on the shared clip.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${FACESTREAM_SHARED:-$(cd .. && pwd)/shared}
bash scripts/setup.sh
. .venv/bin/activate
mkdir -p out
facestream enrol --folder "$SHARED/media/people"
facestream run --source "$SHARED/media/video/short_hamilton_clip.mp4" --headless \
  --out out/annotated.mp4 --log-tracks out/tracks.jsonl
echo "quickstart: wrote out/annotated.mp4 and out/tracks.jsonl" >&2
