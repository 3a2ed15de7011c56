#!/usr/bin/env bash
# bench/dockerfile.sh [RUNS]: Dockerfile builds, rcross against buildah (Debian's), side by side
# in one run on this machine, both pushing a three-platform image (linux/amd64, linux/arm64,
# linux/arm/v7) to the same local registry (issue 12 §6). Not a test; prints medians and ratios.
#
#   a. cross       the buildx-style Go Dockerfile (compiler in a FROM --platform=$BUILDPLATFORM
#                  golang stage, GOARCH=$TARGETARCH, FROM scratch final stage), from scratch:
#                  A = rcross build CTX --platform P -t REG/rc-a-K --push --no-cache
#                  B = buildah build --platform P --jobs 3 --manifest bah-a-K --no-cache CTX
#                      && buildah manifest push --all bah-a-K REG/bah-a-K
#                  Target: rcross >= 3x faster.
#   c. rebuild     the same, nothing changed, caches warm from the warm-up run:
#                  A = rcross build (step cache) to REG/rc-c:1 again
#                  B = buildah build --layers (its layer cache) + manifest push to REG/bah-c:1
#                  Target: rcross >= 20x faster than its own (a) and faster than buildah's rebuild.
#   b. apt         FROM debian:bookworm, RUN apt-get update / install --download-only / install
#                  of ca-certificates (maintainer scripts: its postinst runs many processes),
#                  emulated for arm64 and arm/v7, native for amd64; APT_RUNS runs each (default
#                  1, a few minutes each), timed by GNU time; rcross's per-step seconds say where
#                  the emulated time goes. Target: rcross no slower than buildah.
#                  SKIP_APT=1 leaves it out.
#
# Base images: the Debian bookworm images the tests make with mmdebstrap
# (${RCROSS_TEST_CACHE:-/var/cache/rcross-tests}/debian-bookworm-oci-v1; run
# `cargo test --test debian_images` once), pushed to this benchmark's registry as
# library/debian:bookworm, which both tools reach as docker.io's mirror (rcross through
# registries.toml, buildah through containers-registries.conf). The golang image is built from
# it once, by rcross (not timed): Debian's golang-go on bookworm, for the three platforms.
#
# Emulated RUN steps need QEMU handlers in the machine's binfmt_misc (buildah's containers and
# rcross's sandbox both use the machine's table): this script runs `rcross setup` for arm64 and
# arm (the handlers stay registered, as after `sudo rcross setup`).
#
# Everything else lives under $W (default /tmp/rcross-bench-dockerfile), removed at the end
# unless KEEP=1: the registry, buildah's own storage (--root/--runroot there; other users'
# images are never touched), rcross's caches (XDG_CACHE_HOME there). Needs root, buildah,
# docker-registry, skopeo, time, python3, a Rust toolchain (RCROSS=path skips the release build).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SELF=$ROOT/bench/dockerfile.sh
PLATS=linux/amd64,linux/arm64,linux/arm/v7

next() { # next run number for counter $1
  local f=$W/ctr/$1 k; mkdir -p "$W/ctr"; k=$(cat "$f" 2>/dev/null || echo 0)
  echo $((k + 1)) > "$f"; echo "$k"; }
bah() { buildah --root "$W/buildah/root" --runroot "$W/buildah/run" --storage-driver "$BAH_DRIVER" "$@"; }
rc() { XDG_CACHE_HOME=$W/xdg RCROSS_REGISTRIES_CONFIG=$W/registries.toml "$RCROSS" "$@"; }
bah_build() { # NAME CTX [ARGS]: build the three platforms into manifest NAME, push it
  local name=$1 ctx=$2; shift 2
  CONTAINERS_REGISTRIES_CONF=$W/registries.conf bah build -q --platform "$PLATS" --jobs 3 \
    --manifest "$name" "$@" "$ctx" > /dev/null
  bah manifest push -q --all --tls-verify=false "$name" "docker://$REG/$name:1" > /dev/null; }

if [ "${1:-}" = __op ]; then
  case $2 in
    rc-a) k=$(next rc-a); rc build "$W/ctx/cross" --platform "$PLATS" -t "$REG/rc-a-$k:1" --push --no-cache --json > "$W/json/rc-a-$k.json" ;;
    bah-a) k=$(next bah-a); bah_build "bah-a-$k" "$W/ctx/cross" --no-cache ;;
    rc-c) rc build "$W/ctx/cross" --platform "$PLATS" -t "$REG/rc-c:1" --push --json > "$W/json/rc-c.json" ;;
    bah-c) k=$(next bah-c); bah_build "bah-c-$k" "$W/ctx/cross" --layers ;;
    *) echo "unknown op $2" >&2; exit 2 ;;
  esac
  exit 0
fi

RUNS=${1:-3}
W=${W:-/tmp/rcross-bench-dockerfile}
export W
[ "$(id -u)" = 0 ] || { echo "run as root (buildah, binfmt_misc)" >&2; exit 2; }
for t in buildah docker-registry skopeo python3 /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "missing $t (apt-get install buildah docker-registry skopeo python3 time)" >&2; exit 2; }
done
LAYOUT=${RCROSS_TEST_CACHE:-/var/cache/rcross-tests}/debian-bookworm-oci-v1
[ -f "$LAYOUT/index.json" ] || { echo "no Debian base images at $LAYOUT: run 'cargo test --test debian_images' once" >&2; exit 2; }
PAIR=${BENCH_PEERS:-$ROOT/../shared/bench-peers}/pair.sh
[ -x "$PAIR" ] || PAIR=$ROOT/bench/pair.sh
if [ -z "${RCROSS:-}" ]; then
  (cd "$ROOT" && cargo build --release -q)
  RCROSS=$ROOT/target/release/rcross
fi
export RCROSS

unmount_below() { # buildah's overlay mounts left under $1 (by a run that was killed)
  awk -v d="$1/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l; }
unmount_below "$W"; rm -rf "$W"; mkdir -p "$W/json" "$W/buildah" "$W/xdg"
cleanup() {
  [ -n "${REG_PID:-}" ] && kill "$REG_PID" 2>/dev/null || true
  if [ -z "${KEEP:-}" ]; then
    bah rm --all >/dev/null 2>&1 || true
    unmount_below "$W"
    rm -rf "$W"
  fi
}
trap cleanup EXIT

# The registry, on a free loopback port.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
export REG
cat > "$W/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $W/registry
http:
  addr: $REG
EOF
docker-registry serve "$W/registry.yml" > "$W/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 50); do curl -fsS "http://$REG/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
skopeo copy -q --all --dest-tls-verify=false "oci:$LAYOUT:bookworm" "docker://$REG/library/debian:bookworm"

# docker.io's mirror, for each tool.
printf '[registry."docker.io"]\nmirrors = ["%s"]\n' "$REG" > "$W/registries.toml"
cat > "$W/registries.conf" <<EOF
unqualified-search-registries = ["docker.io"]
[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "$REG"
insecure = true
[[registry]]
location = "$REG"
insecure = true
EOF
BAH_DRIVER=${BAH_DRIVER:-overlay}
bah info >/dev/null 2>&1 || BAH_DRIVER=vfs
export BAH_DRIVER

"$RCROSS" setup --platform linux/arm64,linux/arm/v7 > "$W/setup.log" 2>&1 || { cat "$W/setup.log"; exit 1; }

# The golang image (not timed).
mkdir -p "$W/ctx/golang" "$W/ctx/cross" "$W/ctx/apt"
cat > "$W/ctx/golang/Dockerfile" <<'EOF'
FROM debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends golang-go ca-certificates && rm -rf /var/lib/apt/lists/*
ENV GOTOOLCHAIN=local
EOF
# For every platform: Debian's buildah (1.28) resolves `FROM --platform=$BUILDPLATFORM` to the
# target platform in a multi-platform build, so its build stage runs under emulation and needs
# the image for each target (rcross's runs on linux/amd64 only).
rc build "$W/ctx/golang" --platform "$PLATS" -t "$REG/library/golang:1.19-bookworm" --push \
  > "$W/golang.log" 2>&1 || { echo "building the golang base image failed:"; tail -30 "$W/golang.log"; exit 1; }

cat > "$W/ctx/cross/Dockerfile" <<'EOF'
# syntax=docker/dockerfile:1
FROM --platform=$BUILDPLATFORM golang:1.19-bookworm AS build
WORKDIR /src
COPY go.mod main.go ./
ARG TARGETOS TARGETARCH TARGETVARIANT
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOARM=${TARGETVARIANT#v} GOCACHE=/tmp/gocache go build -o /out/hello .

FROM scratch
COPY --from=build /out/hello /hello
ENTRYPOINT ["/hello"]
EOF
printf 'module hello\n\ngo 1.19\n' > "$W/ctx/cross/go.mod"
cat > "$W/ctx/cross/main.go" <<'EOF'
package main

import (
	"fmt"
	"runtime"
)

func main() { fmt.Printf("hello from %s/%s\n", runtime.GOOS, runtime.GOARCH) }
EOF
cat > "$W/ctx/apt/Dockerfile" <<'EOF'
FROM debian:bookworm
RUN apt-get update
RUN apt-get install -y --no-install-recommends --download-only ca-certificates
RUN apt-get install -y --no-install-recommends ca-certificates
EOF

echo "== rcross $("$RCROSS" --version 2>/dev/null | head -1), $(buildah --version), buildah storage: $BAH_DRIVER, $(nproc) cores"
echo
echo "== a. cross-compiling Dockerfile, three platforms, from scratch, pushed (target: rcross >= 3x faster)"
"$PAIR" "$RUNS" "$SELF __op rc-a" "$SELF __op bah-a"
echo
echo "== c. rebuild, nothing changed, pushed (target: >= 20x faster than a, and faster than buildah's)"
"$PAIR" "$RUNS" "$SELF __op rc-c" "$SELF __op bah-c"
python3 - "$W/json" <<'EOF'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/rc-c*.json"))[-1:]:
    m = json.load(open(f))
    steps = [s for p in m["platforms"] for s in p["steps"]]
    print(f"rcross rebuild: {sum(1 for s in steps if s['cached'])}/{len(steps)} steps from the step cache")
for f in sorted(glob.glob(sys.argv[1] + "/rc-a-*.json"))[-1:]:
    m = json.load(open(f))
    steps = [s for p in m["platforms"] for s in p["steps"]]
    print(f"rcross cross build: {sum(1 for s in steps if s['emulated'])} emulated step(s) of {len(steps)}")
EOF
[ -z "${SKIP_APT:-}" ] || exit 0
echo
echo "== b. apt-get install ca-certificates, emulated for arm64 and arm/v7, ${APT_RUNS:-1} run(s) each (target: rcross no slower)"
for i in $(seq "${APT_RUNS:-1}"); do
  /usr/bin/time -f 'rcross  wall %e s, peak %M KiB' -o "$W/t-rc" \
    bash -c "XDG_CACHE_HOME=$W/xdg RCROSS_REGISTRIES_CONFIG=$W/registries.toml '$RCROSS' build '$W/ctx/apt' --platform '$PLATS' -t '$REG/rc-b-$i:1' --push --no-cache --json > '$W/json/rc-b-$i.json' 2>'$W/rc-b-$i.log'" || { echo "rcross failed:"; tail -20 "$W/rc-b-$i.log"; }
  cat "$W/t-rc"
  /usr/bin/time -f 'buildah wall %e s, peak %M KiB' -o "$W/t-bah" \
    bash -c "$(declare -f bah bah_build); W='$W' REG='$REG' PLATS='$PLATS' BAH_DRIVER='$BAH_DRIVER' bah_build bah-b-$i '$W/ctx/apt' --no-cache" || echo "buildah failed"
  cat "$W/t-bah"
done
python3 - "$W/json" <<'EOF'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/rc-b-*.json")):
    m = json.load(open(f))
    print(f"where rcross's time went ({f.rsplit('/', 1)[1]}):")
    for p in m["platforms"]:
        for s in p["steps"]:
            how = "emulated" if s["emulated"] else "native"
            print(f"  {p['platform']:<14} {s['seconds']:7.1f} s  {how:<8} {s['instruction'][:70]}")
EOF
