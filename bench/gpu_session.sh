#!/usr/bin/env bash
# One call on the lent GPU machine (see docs/gpu.md): the full pipeline with the PyTorch CUDA backends under
# STRICT_GPU=true, FP16-CUDA vs FP32-CPU parity, and the model and pipeline benchmarks.
# Needs, in the working tree: .whl/ (qdrant-edge-py, lap, python-dotenv wheels for cp312) and .gpu_assets/
# (copies of ../shared/models and ../shared/media, which do not travel). Results go to $OUT.
set -uo pipefail
. bench/gpu_common.sh
exec > >(tee "$OUT/log.txt") 2>&1

step machine
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import torch, onnxruntime, cv2, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'onnxruntime', onnxruntime.__version__, 'opencv', cv2.__version__, 'numpy', numpy.__version__)"
nproc
step "run: full pipeline, PyTorch CUDA FP16, STRICT_GPU=true, every frame"
fs run --headless --out "$OUT/gpu_annotated.mp4" --log-tracks "$OUT/gpu_tracks.jsonl" --source "$VIDEO"
echo "run exit code: $?"
step "strict mode refuses a CPU stage"
EMBEDDING_BACKEND=onnxruntime DEVICE=cpu DISPLAY_MODE=none fs run --max-frames 5 --source "$VIDEO"; echo "exit code: $?"
step "compare FP16 CUDA vs FP32 CPU"
fs compare --a pytorch:cuda:fp16 --b onnxruntime:cpu:fp32 "$MEDIA"/people/*/*
fs compare --a pytorch:cuda:fp32 --b onnxruntime:cpu:fp32 "$MEDIA"/people/*/*
step "GPU tests (CUDA paths against the CPU adapters, on the real photos)"
FACESTREAM_SHARED=$PWD/.gpu_assets python3 -m pytest -q -p no:cacheprovider tests/engines/gpu 2>&1 | tail -3
step "bench models"
fs bench models --backends onnxruntime:cpu,pytorch:cuda:fp32,pytorch:cuda:fp16 --batches 1,32,128 --seconds 2 \
  --image "$MEDIA/scenes/obama-1080p.jpg" --json "$OUT/bench_models_gpu.json" --plot "$OUT/bench_models_gpu.png"
step "bench pipeline"
fs bench pipeline --source "$VIDEO" --json "$OUT/bench_pipeline_gpu.json" --plot "$OUT/bench_pipeline_gpu.png"
step done
