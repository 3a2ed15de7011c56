#!/usr/bin/env bash
# Install the Debian/Ubuntu packages rcross's tests and examples use, when missing.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
PKGS=(
  qemu-user-static util-linux file make
  docker-registry skopeo apache2-utils
  gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf gcc-arm-linux-gnueabi
  gcc-riscv64-linux-gnu gcc-i686-linux-gnu libc6-dev-arm64-cross musl-tools
  gcc-powerpc64le-linux-gnu gcc-s390x-linux-gnu gcc-mips64el-linux-gnuabi64
  gcc tar gzip bc python3 python3-pip binutils
  g++-aarch64-linux-gnu g++-arm-linux-gnueabihf g++-arm-linux-gnueabi g++-riscv64-linux-gnu
  libc6-dev-armhf-cross libc6-dev-armel-cross libc6-dev-riscv64-cross
  cmake ninja-build golang-go
  docker.io busybox-static iproute2 openssh-client openssl uidmap
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

# openssh-server: only its sshd program is used (tests/builder_ssh.rs runs a private one on a
# loopback port). The package's own service must not run, so when this script installs it,
# service starts are refused during the install (policy-rc.d) and the units are disabled after;
# an sshd the machine already has is left alone.
if ! dpkg-query -W -f='${Status}' openssh-server 2>/dev/null | grep -q "install ok installed"; then
  echo "== installing: openssh-server (its service stays stopped and disabled)"
  policy=/usr/sbin/policy-rc.d
  own_policy=""
  if [ ! -e "$policy" ]; then
    own_policy=1
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
  if [ -n "$own_policy" ]; then
    $SUDO rm -f "$policy"
    trap - EXIT
  fi
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now --quiet ssh.service ssh.socket 2>/dev/null || true
  elif command -v update-rc.d >/dev/null; then
    $SUDO update-rc.d ssh disable >/dev/null 2>&1 || true
  fi
fi

# zig (from PyPI's ziglang) builds true ARMv6 hard-float code for the Raspberry Pi Zero/1 tests.
if ! python3 -m ziglang version >/dev/null 2>&1; then
  echo "== installing: ziglang (PyPI)"
  # Debian 12's system Python refuses plain pip installs (PEP 668); this is a test machine.
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet ziglang
fi
