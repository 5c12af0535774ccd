#!/usr/bin/env bash
# Where does a frame's time go on the GPU machine? The single-process loop's per-step times, with and without
# limits on CPU thread pools, and a cProfile of it. Same assets as bench/gpu_session.sh.
set -uo pipefail
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
exec > >(tee "$OUT/profile.txt") 2>&1
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 FACESTREAM_MODEL_MIRROR=$PWD/.gpu_assets/models
W=/tmp/fsgpu
mkdir -p "$W"
printf "CHECKPOINT_DIR=$W/checkpoints\nQDRANT_PATH=$W/gallery\nDETECTOR_BACKEND=pytorch\nEMBEDDING_BACKEND=pytorch\nDEVICE=cuda\nSTRICT_GPU=true\n" > "$W/.env"
fs() { python3 -m app --env "$W/.env" "$@"; }
V=.gpu_assets/media/video/short_hamilton_clip.mp4
fs models fetch >/dev/null 2>&1 && fs models export >/dev/null 2>&1 && fs enrol --folder .gpu_assets/media/people >/dev/null 2>&1
echo "== single process, default threads"; fs run --single-process --headless --source $V 2>&1 | tail -1
echo "== single process, OMP/BLAS 1 thread"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 fs run --single-process --headless --source $V 2>&1 | tail -1
echo "== pipeline, OMP/BLAS 1 thread"; OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 fs run --headless --source $V 2>&1 | tail -1
python3 -m cProfile -o /tmp/prof.out -m app --env "$W/.env" run --single-process --headless --source $V 2>&1 | tail -1
python3 -c "import pstats; pstats.Stats('/tmp/prof.out').sort_stats('tottime').print_stats(30)" | tail -45
