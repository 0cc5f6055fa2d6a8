#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs on a GPU machine that has no Rust: the release binary
# and the parity test binaries (built here, stripped, xz-compressed) and the reference fixtures,
# into gpu-kit/ (git-ignored; carry it to the device: run(carry=["gpu-kit"], ...)).
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=gpu-kit
rm -rf "$KIT"
mkdir -p "$KIT/bin"
cargo build --release
cp target/release/faceattr "$KIT/bin/"
# the parity tests, built like `cargo test` builds them; FACEATTR_TEST_BACKEND=cuda runs them
# on the GPU
cargo test --no-run --test parity_features --test parity_training --message-format=json 2>/dev/null |
  python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"])
' "$KIT/bin"
for f in "$KIT"/bin/*; do
  strip "$f"
  xz -T0 -6 "$f"
done
cp -r ../shared/fixtures "$KIT/fixtures"
du -sh "$KIT"/bin/* "$KIT/fixtures"
