#!/usr/bin/env bash
# The main job on the bundled example: build rcross, let it register QEMU handlers (sudo),
# cross-compile hello for three platforms, run each through the handlers and verify each binary
# against its platform.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
top="$here/../.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
bash "$top/tests/install-deps.sh"
cargo build --release --quiet --manifest-path "$top/Cargo.toml"
rcross="$top/target/release/rcross"
$SUDO "$rcross" setup --platform linux/arm64,linux/arm/v7,linux/riscv64
for pair in linux/arm64:aarch64-linux-gnu-gcc linux/arm/v7:arm-linux-gnueabihf-gcc linux/riscv64:riscv64-linux-gnu-gcc; do
  plat="${pair%%:*}"; cc="${pair#*:}"; out="hello-${plat//\//-}"
  make -s -C "$here" CC="$cc" OUT="$out"
  echo "== $plat: $("$here/$out")"
  "$rcross" verify --platform "$plat" "$here/$out"
done
