#!/usr/bin/env bash
# Every test: unit tests, parity against the Keras/PyTorch fixtures in ../shared/fixtures,
# bad-input errors, download, CLI. Dependencies are optimised even in the test profile.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets -- --test-threads=2
