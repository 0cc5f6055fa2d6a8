#!/usr/bin/env bash
# Face detection speed beside onnxruntime in one run (`faceattr bench faces`): YuNet's time per
# 640-pixel photo in faceattr (tract) and in onnxruntime on the same input tensor, the whole
# multi-scale detect, and `faces align` photos/s. Installs onnxruntime into ./.venv-peers on
# first use. Usage: scripts/bench-faces.sh [PHOTO] (default: ../shared/images/astronaut.png).
set -euo pipefail
cd "$(dirname "$0")/.."
PHOTO="${1:-../shared/images/astronaut.png}"
VENV=.venv-peers
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import onnxruntime, numpy" 2>/dev/null ||
  "$VENV/bin/pip" install -q onnxruntime numpy ||
  echo "onnxruntime not installable here: its rows will say n/a" >&2
[ -x target/release/faceattr ] || cargo build --release
lscpu | grep -E "Model name|Flags" | sed -E 's/(Flags:).*(avx512f)?.*/\1 '"$(grep -o -w -E 'avx2|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' ')"'/'
target/release/faceattr bench faces --image "$PHOTO" --python "$VENV/bin/python" "${@:2}"
