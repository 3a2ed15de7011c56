#!/usr/bin/env bash
# Install the Debian/Ubuntu packages rcross's tests and examples use, when missing, then prove
# that what was installed works: every compiler compiles AND links a one-line program, every
# tool the tests run is on PATH. A failure names the compiler or tool, its error and the package
# to install, and the script exits 1 — so a missing C library shows here, not in a test later.
#
#   bash tests/install-deps.sh        everything the test suite needs (tests/run.sh)
#   bash tests/install-deps.sh main   only what the main job needs (examples/hello/run.sh)
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
group="${1:-all}"
case "$group" in
  all|main) ;;
  *) echo "usage: $0 [main]" >&2; exit 2 ;;
esac

# The main job (examples/hello): QEMU for `rcross setup`, make, and static C for amd64, arm64,
# arm/v7 and riscv64. A cross gcc only *recommends* its C library, and the packages are
# installed without recommends (below), so each C library is named here.
MAIN_PKGS=(
  qemu-user-static make gcc libc6-dev
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
  gcc-riscv64-linux-gnu libc6-dev-riscv64-cross
)
TEST_PKGS=(
  util-linux file git
  docker-registry skopeo apache2-utils
  gcc-arm-linux-gnueabi libc6-dev-armel-cross
  gcc-i686-linux-gnu libc6-dev-i386-cross
  gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross
  gcc-s390x-linux-gnu libc6-dev-s390x-cross
  gcc-mips64el-linux-gnuabi64 libc6-dev-mips64el-cross
  musl-tools
  # g++-<triplet> depends on its libstdc++-<N>-dev-<arch>-cross; the link check below proves it.
  g++-aarch64-linux-gnu g++-arm-linux-gnueabihf g++-arm-linux-gnueabi g++-riscv64-linux-gnu
  tar gzip zstd bc python3 python3-pip binutils
  cmake ninja-build golang-go
  docker.io busybox-static iproute2 openssh-client openssl uidmap
  # Debian base images of the Dockerfile tests (tests/common_debian): mmdebstrap builds them
  # (as root, --mode=root); without recommends it needs arch-test to build the foreign ones
  # (which run under the qemu-user-static handlers) and the archive's keyring to verify it.
  mmdebstrap arch-test debian-archive-keyring
  # The nginx example's page is fetched with curl (tests/dockerfile_build.rs).
  curl
)
PKGS=("${MAIN_PKGS[@]}")
[ "$group" = main ] || PKGS+=("${TEST_PKGS[@]}")

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# Another apt on the machine holds the dpkg lock for a while: wait for it rather than fail.
APT=(apt-get -o DPkg::Lock::Timeout=300)

missing=()
for p in "${PKGS[@]}"; do
  installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  $SUDO "${APT[@]}" update -qq
  # No recommends: binfmt-support would register handlers in the machine's own table.
  DEBIAN_FRONTEND=noninteractive $SUDO "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$group" = all ]; then
  # openssh-server: only its sshd program is used (tests/builder_ssh.rs runs a private one on a
  # loopback port). The package's own service must not run, so when this script installs it,
  # service starts are refused during the install (policy-rc.d) and the units are disabled after;
  # an sshd the machine already has is left alone.
  if ! installed openssh-server; then
    echo "== installing: openssh-server (its service stays stopped and disabled)"
    policy=/usr/sbin/policy-rc.d
    own_policy=""
    if [ ! -e "$policy" ]; then
      own_policy=1
      printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
      $SUDO chmod 755 "$policy"
      trap '$SUDO rm -f "$policy"' EXIT
    fi
    $SUDO "${APT[@]}" update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO "${APT[@]}" install -y -qq --no-install-recommends openssh-server >/dev/null
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
fi

# ---------------------------------------------------------------------------------------------
# Proof: everything installed above works. Cheap when it does (a second or two; zig and go
# build their target's runtime once, then reuse their caches).
# ---------------------------------------------------------------------------------------------
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=()

printf '#include <stdio.h>\n#include <math.h>\nint main(int c, char **v) { printf("%%f\\n", sqrt((double)c)); return v[0] == 0; }\n' >"$work/t.c"
printf '#include <iostream>\n#include <string>\nint main() { std::string s("ok"); std::cout << s << std::endl; return 0; }\n' >"$work/t.cc"

# check_cc LANG PACKAGE COMMAND...: COMMAND compiles and links a one-line LANG program.
n=0
check_cc() {
  local lang="$1" package="$2"
  shift 2
  n=$((n + 1))
  local src="$work/t.c" libs=(-lm)
  [ "$lang" = "C++" ] && { src="$work/t.cc"; libs=(); }
  if ! command -v "$1" >/dev/null 2>&1; then
    failures+=("$*: not found (install: $package)")
    return
  fi
  local err
  if ! err="$("$@" -O1 "$src" -o "$work/out$n" "${libs[@]}" 2>&1)" || [ ! -s "$work/out$n" ]; then
    failures+=("$*: cannot compile and link a one-line $lang program (install: $package):
$(printf '%s\n' "$err" | head -5 | sed 's/^/      /')")
  fi
}

check_cc C "gcc libc6-dev" gcc
check_cc C "gcc-aarch64-linux-gnu libc6-dev-arm64-cross" aarch64-linux-gnu-gcc
check_cc C "gcc-arm-linux-gnueabihf libc6-dev-armhf-cross" arm-linux-gnueabihf-gcc
check_cc C "gcc-riscv64-linux-gnu libc6-dev-riscv64-cross" riscv64-linux-gnu-gcc
if [ "$group" = all ]; then
  check_cc C "gcc-arm-linux-gnueabi libc6-dev-armel-cross" arm-linux-gnueabi-gcc
  check_cc C "gcc-i686-linux-gnu libc6-dev-i386-cross" i686-linux-gnu-gcc
  check_cc C "gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross" powerpc64le-linux-gnu-gcc
  check_cc C "gcc-s390x-linux-gnu libc6-dev-s390x-cross" s390x-linux-gnu-gcc
  check_cc C "gcc-mips64el-linux-gnuabi64 libc6-dev-mips64el-cross" mips64el-linux-gnuabi64-gcc
  check_cc C "musl-tools" musl-gcc
  check_cc C++ "g++-aarch64-linux-gnu (and its libstdc++-*-dev-arm64-cross)" aarch64-linux-gnu-g++
  check_cc C++ "g++-arm-linux-gnueabihf (and its libstdc++-*-dev-armhf-cross)" arm-linux-gnueabihf-g++
  check_cc C++ "g++-arm-linux-gnueabi (and its libstdc++-*-dev-armel-cross)" arm-linux-gnueabi-g++
  check_cc C++ "g++-riscv64-linux-gnu (and its libstdc++-*-dev-riscv64-cross)" riscv64-linux-gnu-g++
  # The ARMv6 hard-float fixture compiler of tests/common (ZIG_ARMV6).
  check_cc C "python3 -m pip install ziglang" python3 -m ziglang cc -target arm-linux-musleabihf -mcpu=arm1176jzf_s

  # Go cross-builds on its own (no cgo): what tests/toolchain_cross.rs does for each platform.
  n=$((n + 1))
  if command -v go >/dev/null 2>&1; then
    mkdir -p "$work/go"
    printf 'package main\n\nfunc main() { println("ok") }\n' >"$work/go/main.go"
    if ! err="$(cd "$work/go" && GOOS=linux GOARCH=arm GOARM=6 CGO_ENABLED=0 GO111MODULE=off go build -o "$work/hello-go" main.go 2>&1)"; then
      failures+=("go build (GOOS=linux GOARCH=arm GOARM=6): cannot build a one-line program (install: golang-go):
$(printf '%s\n' "$err" | head -5 | sed 's/^/      /')")
    fi
  else
    failures+=("go: not found (install: golang-go)")
  fi
fi

# check_tool PACKAGE PROGRAM...: each PROGRAM is on PATH (or, for sbin programs, in /usr/sbin).
check_tool() {
  local package="$1"
  shift
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || [ -x "/usr/sbin/$t" ] || failures+=("$t: not found (install: $package)")
  done
}
check_tool qemu-user-static qemu-aarch64-static qemu-arm-static qemu-riscv64-static
check_tool make make
if [ "$group" = all ]; then
  check_tool qemu-user-static qemu-i386-static
  check_tool util-linux unshare nsenter mount umount
  check_tool file file
  check_tool curl curl
  check_tool docker-registry docker-registry
  check_tool skopeo skopeo
  check_tool apache2-utils htpasswd
  check_tool git git
  check_tool tar tar
  check_tool gzip gzip
  check_tool zstd zstd
  check_tool bc bc
  check_tool python3 python3
  check_tool binutils readelf objdump
  check_tool cmake cmake ctest
  check_tool ninja-build ninja
  check_tool docker.io docker dockerd
  check_tool busybox-static busybox
  check_tool iproute2 ip
  check_tool openssh-client ssh ssh-keygen
  check_tool openssh-server sshd
  check_tool openssl openssl
  check_tool dpkg dpkg-deb
  check_tool apt apt-get
  check_tool mmdebstrap mmdebstrap
  check_tool arch-test arch-test
  # mmdebstrap runs (its perl modules load); the foreign builds are tests/debian_images.rs's.
  if command -v mmdebstrap >/dev/null 2>&1 && ! err="$(mmdebstrap --version 2>&1)"; then
    failures+=("mmdebstrap --version: does not run (install: mmdebstrap):
$(printf '%s\n' "$err" | head -5 | sed 's/^/      /')")
  fi
  [ -s /usr/share/keyrings/debian-archive-keyring.gpg ] ||
    failures+=("/usr/share/keyrings/debian-archive-keyring.gpg: missing (install: debian-archive-keyring)")
fi

if [ "${#failures[@]}" -gt 0 ]; then
  echo "tests/install-deps.sh: ${#failures[@]} prerequisite(s) do not work after installing:" >&2
  printf '  - %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "== prerequisites ($group): $n compilers compile and link, every tool is present"
