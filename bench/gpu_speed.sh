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
STEPS=${STEPS:-"machine gputests names decode full decode_threads streams"}

machine() {
  step machine
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "cores $(nproc); /dev/shm: $(df -h /dev/shm | tail -1)"
  python3 -c "import torch, cv2; print('torch', torch.__version__, 'opencv', cv2.__version__)"
}

gputests() {
  step "GPU tests (tests/engines: the CUDA cases and the CUDA binding)"
  FACESTREAM_SHARED=$PWD/.gpu_assets timeout 300 python3 -m pytest -q -p no:cacheprovider -rs tests/engines 2>&1 | tail -25
}

names() {
  step "names on the shared clip (pipeline, batched, STRICT_GPU)"
  LOG_LEVEL=INFO timeout 120 python3 -m app --env "$W/.env" run --headless --log-tracks "$OUT/clip_tracks.jsonl" \
    --source "$VIDEO" 2>&1 | tail -14
  python3 - "$OUT/clip_tracks.jsonl" <<'PY'
import sys
from pathlib import Path
from bench.clip_labels import check_labels, named_per_frame
check_labels(named_per_frame(Path(sys.argv[1])))
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
  timeout 300 python3 -m app --env "$W/.env" bench pipeline --source "$GRID" --loops "${LOOPS:-3}" \
    --json "$OUT/bench_1080p.json" --plot "$OUT/bench_1080p.png"
}

cpu_sampler() {  # every 2 s, each fs-* process's CPU use (100 % = one core), while a run goes on
  python3 - <<'PY' &
import os, time
tick = os.sysconf("SC_CLK_TCK")
def sample():
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
            if comm.startswith("fs-"):
                f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                out[comm] = out.get(comm, 0) + int(f[11]) + int(f[12])
        except OSError:
            pass
    return out
prev, t0, seen = sample(), time.time(), False
while True:
    time.sleep(2)
    cur = sample()
    if not cur and (seen or time.time() - t0 > 120):
        break  # the run is over
    seen = seen or bool(cur)
    line = " ".join(f"{k[3:]} {100 * (v - prev.get(k, 0)) / tick / 2:.0f}%" for k, v in sorted(cur.items()))
    if line:
        print(f"  cpu {time.time() - t0:5.0f}s: {line}", flush=True)
    prev = cur
PY
  SAMPLER=$!
}

decode_threads() {
  step "every-frame 1080p with DECODE_THREADS = ${DECODE_VARIANTS:-0 8 4} (same call: ratios), CPU per stage"
  for t in ${DECODE_VARIANTS:-0 8 4}; do
    cpu_sampler
    DECODE_THREADS=$t timeout 150 python3 -m app --env "$W/.env" bench pipeline --source "$GRID" --loops 3 \
      --skip-live --skip-baseline --json "$OUT/bench_decode$t.json" 2>&1 | grep -v "^facestream:" | sed "s/^/[threads $t] /"
    kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null
  done
}

hwaccel() {
  step "OpenCV/FFmpeg hardware decode on this machine?"
  python3 - "$GRID" <<'PY'
import sys, time, cv2
for name, accel in (("none", cv2.VIDEO_ACCELERATION_NONE), ("any", cv2.VIDEO_ACCELERATION_ANY)):
    cap = cv2.VideoCapture(sys.argv[1], cv2.CAP_FFMPEG, [cv2.CAP_PROP_HW_ACCELERATION, accel])
    used = cap.get(cv2.CAP_PROP_HW_ACCELERATION); n = 0; t = time.perf_counter()
    while n < 600 and cap.read()[0]:
        n += 1
    print(f"hw acceleration {name}: in use {used}, {n / (time.perf_counter() - t):.0f} fps")
PY
}

profile() {
  step "py-spy over every process of an every-frame 1080p run (on-CPU samples, collapsed stacks)"
  timeout 200 /tmp/site/bin/py-spy record --subprocesses --rate 200 --format raw --output "$OUT/pyspy.txt" -- \
    python3 -m app --env "$W/.env" bench pipeline --source "$GRID" --loops 2 --skip-live --skip-baseline \
    2>&1 | grep -v "^py-spy>" | tail -4
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
