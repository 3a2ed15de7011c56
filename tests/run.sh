#!/usr/bin/env bash
# The one test command (README "Run the tests"): installs what the suite needs on a fresh
# Debian/Ubuntu machine when it is missing, starts the services it needs, then runs the gates
# (fmt, clippy) and the whole suite. Tests whose prerequisite is missing fail when CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/install-deps.sh

command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --all-targets
