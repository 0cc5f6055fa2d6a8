#!/usr/bin/env bash
# Runs the same three workloads in faceattr, PyTorch and Keras on this machine, in one run,
# and prints one table (images/s, 218x178, float32, random weights with VGG16's real widths):
#   W1 base forward (batch 12 and 32), W2 one reference training step (forward all, backward
#   block5 + head, Adam), W3 the same step from cached block4_pool features.
# Installs torch (CPU) and tensorflow-cpu + tf_keras into ./.venv-peers on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
REPEATS="${REPEATS:-3}"
source scripts/peers-venv.sh
[ -x target/release/faceattr ] || cargo build --release
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS" RAYON_NUM_THREADS="$THREADS"
ours=$(target/release/faceattr bench model --json --repeats "$REPEATS")
burn=$(target/release/faceattr bench model --json --repeats "$REPEATS" --kernels burn --no-peak)
torch=$("$VENV/bin/python" scripts/peers.py torch "$THREADS" "$REPEATS" 2>/dev/null | tail -1) || torch='{}'
keras=$(TF_CPP_MIN_LOG_LEVEL=3 "$VENV/bin/python" scripts/peers.py keras "$THREADS" "$REPEATS" 2>/dev/null | tail -1) || keras='{}'
python3 - "$ours" "$burn" "$torch" "$keras" <<'PY'
import json, sys
cols = ["faceattr", "burn conv", "PyTorch", "Keras"]
rows = [json.loads(a) for a in sys.argv[1:]]
keys = [("w1_b12_img_s", "W1 base forward, batch 12"), ("w1_b32_img_s", "W1 base forward, batch 32"),
        ("w2_b12_img_s", "W2 reference training step, batch 12"), ("w3_b12_img_s", "W3 step from cached block4, batch 12")]
print(f"{'images/s':<40}" + "".join(f"{c:>12}" for c in cols) + f"{'vs best peer':>14}")
for k, name in keys:
    vals = [r.get(k, float('nan')) for r in rows]
    peers = [v for v in vals[2:] if v == v]
    ratio = f"{vals[0] / max(peers):>13.2f}x" if peers and vals[0] == vals[0] else f"{'-':>14}"
    print(f"{name:<40}" + "".join(f"{v:>12.2f}" for v in vals) + ratio)
print(f"faceattr's kernels: {rows[0]['peak_gflops']:.0f} GFLOP/s matrix-product peak (gemm); "
      "'burn conv' is faceattr with burn-flex's own convolution (--kernels burn); "
      "'vs best peer' is faceattr over the better of PyTorch and Keras in this run")
PY
