#!/usr/bin/env bash
# Set up facestream on a fresh machine: system packages (if root), a venv, the package, the models.
# FACESTREAM_MODEL_MIRROR=DIR copies model files from DIR instead of downloading them.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # Xvfb for the window test (xdotool presses its keys), ffmpeg for screenshots and streams, the libraries
  # OpenCV's Qt window needs, GStreamer's RTSP server for the RTSP fault tests (run by the system python3,
  # where python3-gi lives), mosquitto for the MQTT event tests (they start their own broker)
  # chromium + chromium-driver for the web app's browser test (selenium drives Debian's chromium: no download)
  need=()
  for p in xvfb xauth xdotool ffmpeg libgl1 libglib2.0-0 libxkbcommon-x11-0 libxcb-xinerama0 libxcb-icccm4 \
           libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-randr0 libxcb-shape0 libfontconfig1 \
           python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good mosquitto \
           chromium chromium-driver; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU build of PyTorch (a CUDA machine gets its own with `pip install -e '.[torch]'`).
python -m pip install -q "torch==2.13.0" || python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
python -m pip install -q -e '.[torch,rtx,dev]'
facestream models fetch
facestream models export
echo "setup: done — activate with: . .venv/bin/activate" >&2
