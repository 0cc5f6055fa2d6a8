#!/usr/bin/env bash
# End-to-end fine-tune, faceattr against PyTorch and Keras in one run: 2 000 generated
# 178x218 JPEGs (+ 200 for validation), VGG16 with random weights and blocks 1-4 frozen,
# batch 12, 6 epochs. Wall time, per-epoch time and peak memory of each; for faceattr also
# the share of epoch time spent waiting for data. PEER_EPOCHS=2 runs the peers for 2 epochs
# and extrapolates (their epochs all cost the same: nothing is cached).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
EPOCHS="${EPOCHS:-6}"
PEER_EPOCHS="${PEER_EPOCHS:-$EPOCHS}"
DATA="${DATA:-target/bench-finetune}"
PEERS="${PEERS-torch keras}"  # PEERS= runs faceattr alone
source scripts/peers-venv.sh
[ -x target/release/faceattr ] || cargo build --release
[ -d "$DATA/train" ] || target/release/faceattr data synth --out "$DATA" --per-class 1000,100,0
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS" RAYON_NUM_THREADS="$THREADS"
python3 scripts/bench_finetune.py "$DATA" "$EPOCHS" "$PEER_EPOCHS" "$THREADS" "$VENV/bin/python" "$PEERS"
