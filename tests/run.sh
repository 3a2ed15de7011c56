#!/usr/bin/env bash
# The one test command (README "Run the tests"): installs what the suite needs on a fresh
# Debian/Ubuntu machine when it is missing, starts the services it needs, then runs the gates
# (fmt, clippy) and the whole suite, strict: a test whose prerequisite is still missing fails
# (RCROSS_TEST_STRICT=1, tests/prereq/mod.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
# Everything the tests need is installed below, so a prerequisite still missing is a failure,
# never a skip (tests/prereq/mod.rs).
export RCROSS_TEST_STRICT=1

bash tests/install-deps.sh

command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# The Docker engine tests need the local engine (unix:///var/run/docker.sock); start one when
# nothing answers there (no systemd in containers and CI VMs: run dockerd directly).
if ! docker version >/dev/null 2>&1; then
  echo "== starting dockerd (log: /tmp/rcross-dockerd.log)"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO sh -c 'nohup dockerd >/tmp/rcross-dockerd.log 2>&1 &'
  for _ in $(seq 1 30); do
    docker version >/dev/null 2>&1 && break
    sleep 1
  done
  docker version >/dev/null 2>&1 || { echo "dockerd did not answer within 30 s; see /tmp/rcross-dockerd.log" >&2; tail -20 /tmp/rcross-dockerd.log >&2; exit 1; }
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --all-targets
