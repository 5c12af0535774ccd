#!/usr/bin/env bash
# End-to-end speed on the lent GPU machine (issue #4), one call: names still right with batching (STRICT_GPU,
# every frame of the shared clip), then on the 1080p grid clip (bench/media.py): every frame processed and
# annotated vs the naive loop, live 1080p30 latency, and the most live 1080p30 streams that keep up.
# STEPS picks a subset (default: all, in this order); STREAMS the stream counts to try.
set -uo pipefail
. bench/gpu_common.sh
exec > >(tee -a "$OUT/speed.txt") 2>&1
GRID=.gpu_assets/grid1080.mp4
export EMBED_BATCH=64
STEPS=${STEPS:-"machine gputests names decode full interval3 streams"}

machine() {
  step machine
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "cores $(nproc); /dev/shm: $(df -h /dev/shm | tail -1)"
  python3 -c "import torch, cv2; print('torch', torch.__version__, 'opencv', cv2.__version__)"
}

gputests() {
  step "GPU tests (tests/engines/gpu, CUDA cases)"
  FACESTREAM_SHARED=$PWD/.gpu_assets timeout 300 python3 -m pytest -q -p no:cacheprovider tests/engines/gpu 2>&1 | tail -3
}

names() {
  step "names on the shared clip (pipeline, batched, STRICT_GPU)"
  LOG_LEVEL=INFO timeout 120 python3 -m app --env "$W/.env" run --headless --log-tracks "$OUT/clip_tracks.jsonl" \
    --source "$VIDEO" 2>&1 | tail -14
  python3 - "$OUT/clip_tracks.jsonl" <<'PY'
import sys
from pathlib import Path
from tests.app.test_pipeline_video import check_labels, tracks_of
check_labels(tracks_of(Path(sys.argv[1])))
print("labels: as in ../shared/media/README.md")
PY
}

decode() {
  step "decode ceiling: OpenCV/FFmpeg on the 1080p clip, one process"
  python3 - "$GRID" <<'PY'
import sys, time, cv2
cap = cv2.VideoCapture(sys.argv[1], cv2.CAP_FFMPEG); n = 0; t = time.perf_counter()
while cap.read()[0]:
    n += 1
print(f"decode: {n} frames of 1080p in {time.perf_counter() - t:.2f} s = {n / (time.perf_counter() - t):.0f} fps")
PY
}

full() {
  step "1080p every frame (annotated) + live 1080p30 + naive loop"
  timeout 300 python3 -m app --env "$W/.env" bench pipeline --source "$GRID" --json "$OUT/bench_1080p.json" \
    --plot "$OUT/bench_1080p.png"
}

interval3() {
  step "1080p every frame (annotated), each track embedded every 3rd frame (EMBED_INTERVAL=3)"
  EMBED_INTERVAL=3 timeout 200 python3 -m app --env "$W/.env" bench pipeline --source "$GRID" --skip-live \
    --skip-baseline --json "$OUT/bench_1080p_interval3.json"
}

streams() {
  step "live 1080p30 streams (one run per count, each bounded; stops at the first that falls behind)"
  for n in ${STREAMS:-8 12 16 20 24}; do
    timeout 150 python3 -m app --env "$W/.env" bench pipeline --source "$GRID" --skip-baseline --skip-live \
      --skip-every-frame --streams "$n" --stream-frames 300 --json "$OUT/bench_streams$n.json" | grep -A1 "live streams" \
      || { echo "streams $n: no result (rc ${PIPESTATUS[0]})"; break; }
    python3 -c "import json,sys; sys.exit(0 if json.load(open('$OUT/bench_streams$n.json'))['streams'][0]['keeps_up'] else 1)" \
      || break
  done
}

for s in $STEPS; do "$s"; done
step done
