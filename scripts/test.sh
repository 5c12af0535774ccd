#!/usr/bin/env bash
# The test suite: lint, then pytest (pass -m "not slow" for the quick subset).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export FACESTREAM_MODEL_MIRROR=${FACESTREAM_MODEL_MIRROR:-$(cd .. && pwd)/shared/models}
ruff check app engines tests bench
pytest "$@"
