#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, the Terraform checks, then every unit,
# property, interop and end-to-end test of the workspace. Installs the real peers the tests
# talk to (ffmpeg, dig, Chromium, Terraform or OpenTofu, checkov, ...) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the test-deps script installs outside the system (OpenTofu, checkov) come first.
export SKEIN_TEST_TOOLS="${SKEIN_TEST_TOOLS:-$HOME/.cache/skein-test-tools}"
export PATH="$SKEIN_TEST_TOOLS/bin:$PATH"
scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== terraform"
scripts/test-terraform.sh

echo "== cargo test"
# Binaries first: end-to-end tests start them as real processes.
cargo build --workspace --bins --locked
cargo test --workspace --locked -- --test-threads "${TEST_THREADS:-2}"
