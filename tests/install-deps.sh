#!/usr/bin/env bash
# Install the Debian/Ubuntu packages rcross's tests and examples use, when missing.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
PKGS=(
  qemu-user-static util-linux file make
  docker-registry skopeo
  gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf gcc-arm-linux-gnueabi
  gcc-riscv64-linux-gnu gcc-i686-linux-gnu libc6-dev-arm64-cross musl-tools
  gcc-powerpc64le-linux-gnu gcc-s390x-linux-gnu gcc-mips64el-linux-gnuabi64
  gcc tar gzip bc python3 python3-pip
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  $SUDO apt-get update -qq
  # No recommends: binfmt-support would register handlers in the machine's own table.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# zig (from PyPI's ziglang) builds true ARMv6 hard-float code for the Raspberry Pi Zero/1 tests.
if ! python3 -m ziglang version >/dev/null 2>&1; then
  echo "== installing: ziglang (PyPI)"
  python3 -m pip install --quiet ziglang 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages ziglang
fi
