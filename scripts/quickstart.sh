#!/usr/bin/env bash
# Fresh machine → annotated video: set up, fetch the sample people and clip, enrol the people, run the clip.
# FACESTREAM_MODEL_MIRROR=DIR / FACESTREAM_SAMPLES_MIRROR=DIR copy the models / samples from DIR instead of
# downloading them (relative paths are taken from where you run this script).
set -euo pipefail
for var in FACESTREAM_MODEL_MIRROR FACESTREAM_SAMPLES_MIRROR; do
  dir=${!var:-}
  if [ -n "$dir" ]; then
    [ -d "$dir" ] || { echo "quickstart: $var=$dir is not a folder: fix it, or unset it to download" >&2; exit 2; }
    export "$var=$(cd "$dir" && pwd)"
  fi
done
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
facestream samples fetch --dest samples
mkdir -p out
facestream enrol --folder samples/people
facestream run --source samples/video/short_hamilton_clip.mp4 --headless \
  --out out/annotated.mp4 --log-tracks out/tracks.jsonl
echo "quickstart: wrote out/annotated.mp4 and out/tracks.jsonl" >&2
