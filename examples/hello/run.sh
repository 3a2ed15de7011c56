#!/usr/bin/env bash
# The main job on the bundled example:
#  0. install only what this job needs (QEMU, make, gcc and the cross gcc for each platform,
#     with their C libraries), proven by linking a program with each compiler;
#  1. build rcross and let it register QEMU handlers (sudo), so foreign programs run here;
#  2. rcross build: cross-compile hello for linux/amd64, linux/arm64 and linux/arm/v7, verify
#     every binary against its platform and assemble a reproducible multi-platform OCI image
#     index in examples/hello/out (an OCI layout; add -t REG/REPO:TAG --push to push it);
#  3. rcross inspect the result, and run each platform's program through the handlers.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
top="$here/../.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
bash "$top/tests/install-deps.sh" main
cargo build --release --quiet --manifest-path "$top/Cargo.toml"
rcross="$top/target/release/rcross"
$SUDO "$rcross" setup --platform linux/arm64,linux/arm/v7,linux/riscv64
"$rcross" build "$here" --platform linux/amd64,linux/arm64,linux/arm/v7 --output "oci:$here/out"
"$rcross" inspect "oci:$here/out:latest"
for pair in linux/arm64:aarch64-linux-gnu-gcc linux/arm/v7:arm-linux-gnueabihf-gcc linux/riscv64:riscv64-linux-gnu-gcc; do
  plat="${pair%%:*}"; cc="${pair#*:}"; out="hello-${plat//\//-}"
  make -s -C "$here" CC="$cc" OUT="$out"
  echo "== $plat: $("$here/$out")"
  "$rcross" verify --platform "$plat" "$here/$out"
done
