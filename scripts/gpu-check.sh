#!/usr/bin/env bash
# The GPU checks of issue 14, in one run on a machine with an NVIDIA GPU and PyTorch but no
# Rust (unpacks gpu-kit/ from scripts/gpu-kit.sh). Each part has its own time limit and the
# next runs whatever the last gave; everything lands in $OUT (default gpu-out/):
#   1. the parity tests on the GPU (features against Keras/PyTorch 1e-5, three Keras training
#      steps 1e-4), FACEATTR_TEST_BACKEND=cuda;
#   2. `faceattr bench model --backend cuda --json` in fp32 and tf32, and PyTorch's same
#      workloads (scripts/peers_gpu.py) in fp32, tf32 and bf16;
#   3. with E2E=1: the 6-epoch fine-tune of 2 000 generated images, faceattr against PyTorch.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-out}"
REPEATS="${REPEATS:-20}"
mkdir -p "$OUT"
BIN="$(mktemp -d)"
for f in gpu-kit/bin/*.xz; do
  xz -dc "$f" >"$BIN/$(basename "$f" .xz)" && chmod +x "$BIN/$(basename "$f" .xz)"
done
PY="${PYTHON:-python3}"
log() { echo "== $* ($(date +%T))" | tee -a "$OUT/summary.txt"; }
log "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
log "PyTorch: $("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' 2>&1 | tail -1)"

log "1. parity tests on the GPU"
export FACEATTR_FIXTURES="$PWD/gpu-kit/fixtures"
# the test binaries do not restart onto the loader's path as faceattr does: give them pip's
# nvidia-* library folders (cuDNN) up front
NV="$("$PY" -c 'import glob, site; print(":".join(sorted(d for p in site.getsitepackages() for d in glob.glob(p + "/nvidia/*/lib"))))' 2>/dev/null)"
for t in parity_features parity_training; do
  LD_LIBRARY_PATH="$NV:${LD_LIBRARY_PATH:-}" FACEATTR_TEST_BACKEND=cuda timeout 240 "$BIN/$t" --test-threads 1 >"$OUT/$t.txt" 2>&1
  log "$t: exit $? $(grep -E '^test result' "$OUT/$t.txt")"
done

log "2. bench model, faceattr and PyTorch"
for p in fp32 tf32; do
  timeout 120 "$BIN/faceattr" bench model --backend cuda --precision "$p" --repeats "$REPEATS" --json \
    >"$OUT/faceattr_$p.json" 2>"$OUT/faceattr_$p.err"
  log "faceattr $p: exit $? $(cat "$OUT/faceattr_$p.json") $(tail -c 600 "$OUT/faceattr_$p.err")"
done
for p in fp32 tf32 bf16; do
  timeout 120 "$PY" scripts/peers_gpu.py "$p" "$REPEATS" >"$OUT/torch_$p.json" 2>"$OUT/torch_$p.err"
  log "pytorch $p: exit $? $(tail -1 "$OUT/torch_$p.json") $(tail -c 300 "$OUT/torch_$p.err")"
done

if [ "${E2E:-0}" = 1 ]; then
  log "3. end-to-end fine-tune, 6 epochs of 2 000 generated images"
  DATA="$(mktemp -d)/data"
  "$BIN/faceattr" data synth --out "$DATA" --per-class 1000,100,0 >/dev/null
  FACEATTR="$BIN/faceattr" FACEATTR_ARGS="--backend cuda --workers $(nproc)" DEVICE=cuda WORKERS=12 \
    timeout 300 "$PY" scripts/bench_finetune.py "$DATA" 6 6 "$(nproc)" "$PY" torch >"$OUT/finetune.txt" 2>&1
  log "finetune: exit $?"
  head -5 "$OUT/finetune.txt" | tee -a "$OUT/summary.txt"
fi
log "done"
