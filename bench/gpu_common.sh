# Sourced by bench/gpu_*.sh on the lent GPU machine (see docs/gpu.md): wheels, PYTHONPATH, a .env for the
# PyTorch CUDA backends under STRICT_GPU, the models and an enrolled gallery. Needs, in the working tree:
# .whl/ (qdrant-edge-py, lap, python-dotenv wheels for cp312) and .gpu_assets/ (copies of ../shared/models and
# ../shared/media, which do not travel, plus the 1080p clip made by bench/media.py). Results go to $OUT.
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 FACESTREAM_MODEL_MIRROR=$PWD/.gpu_assets/models
W=/tmp/fsgpu
mkdir -p "$W"
cat > "$W/.env" <<ENV
CHECKPOINT_DIR=$W/checkpoints
QDRANT_PATH=$W/gallery
DETECTOR_BACKEND=pytorch
EMBEDDING_BACKEND=pytorch
DEVICE=cuda
GPU_PRECISION=fp16
STRICT_GPU=true
LOG_LEVEL=WARNING
ENV
fs() { python3 -m app --env "$W/.env" "$@"; }
MEDIA=.gpu_assets/media
VIDEO=$MEDIA/video/short_hamilton_clip.mp4
step() { echo; echo "=== $* ($(date +%T))"; }
if [ ! -d "$W/gallery" ]; then
  fs models fetch >/dev/null && fs models export >/dev/null && fs enrol --folder "$MEDIA/people" >/dev/null || exit 1
fi
