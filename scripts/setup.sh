#!/usr/bin/env bash
# Installs what faceattr needs on a fresh Debian/Ubuntu machine: a C compiler for a few
# crates' build scripts, a font for the plots, and the stable Rust toolchain with rustfmt
# and clippy.
# No system HDF5, BLAS or CUDA toolkit is needed for the default (CPU) build.
set -euo pipefail
need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v curl >/dev/null 2>&1 || need_apt+=(curl ca-certificates)
# curves.png and the evaluation charts draw their text with DejaVu Sans
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ ${#need_apt[@]} -gt 0 ]; then
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
# The browser test of `faceattr serve`'s page (tests/browser.rs) drives headless Chromium through
# chromedriver. Optional: where they cannot be installed the test says SKIPPED.
if ! { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }; then
  if command -v apt-get >/dev/null 2>&1; then
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; } ||
      echo "setup: chromium/chromium-driver not installable here; the browser test will be skipped" >&2
  fi
fi
if ! command -v cargo >/dev/null 2>&1; then
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
if [ "${1:-}" != "--no-build" ]; then
  cargo build --release
fi
