#!/usr/bin/env bash
# Where does a frame's time go on the GPU machine? The single-process loop's per-step times, with and without
# limits on CPU thread pools, and a cProfile of it. Same assets as bench/gpu_session.sh.
set -uo pipefail
. bench/gpu_common.sh
exec > >(tee "$OUT/profile.txt") 2>&1
V=$VIDEO
echo "== single process, default threads"; DISPLAY_MODE=none fs run --single-process --source $V 2>&1 | tail -1
echo "== single process, OMP/BLAS 1 thread"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 DISPLAY_MODE=none fs run --single-process --source $V 2>&1 | tail -1
echo "== pipeline, OMP/BLAS 1 thread"; OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 DISPLAY_MODE=none fs run --source $V 2>&1 | tail -1
DISPLAY_MODE=none python3 -m cProfile -o /tmp/prof.out -m app --env "$W/.env" run --single-process --source $V 2>&1 | tail -1
python3 -c "import pstats; pstats.Stats('/tmp/prof.out').sort_stats('tottime').print_stats(30)" | tail -45
