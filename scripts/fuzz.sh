#!/usr/bin/env bash
# A longer fuzzing run of every reader of user files (tests/fuzz): CASES mutated and hostile
# inputs per format (default 100000), from SEED (default: the date). Prints a table of
# cases, accepted, refused, dependency panics contained, slowest case and peak memory per
# format; failing inputs are kept under target/tmp/fuzz-failures/.
#   scripts/fuzz.sh [CASES] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
export FACEATTR_FUZZ_CASES="${1:-100000}"
export FACEATTR_FUZZ_SEED="${2:-$(date +%Y%m%d)}"
echo "fuzz: $FACEATTR_FUZZ_CASES cases per format, seed $FACEATTR_FUZZ_SEED"
cargo test --test fuzz -- --nocapture --test-threads=1
