#!/usr/bin/env bash
# bench/build.sh [RUNS]: `rcross build --push` of examples/hello for three platforms against
# podman doing the same job, side by side in one run on this machine (issue 5 §6, first two
# items). Not a test; prints medians and ratios.
#
#   1. new image   A = rcross build examples/hello --platform linux/amd64,linux/arm64,linux/arm/v7
#                      -t REG/rc-K:latest --push --output oci:W/oci/rc-K        (new repo K per run)
#                  B = the podman way for the same source: make the three hello binaries with the
#                      compilers and flags of examples/hello/Makefile (gcc, aarch64-linux-gnu-gcc,
#                      arm-linux-gnueabihf-gcc; -O2 -Wall -static; the three in parallel),
#                      podman build --no-cache --platform P of a FROM scratch image per platform,
#                      podman manifest create + add x3, manifest push --all     (new repo K per run)
#                  Target: rcross >= 5x faster.
#   1b. warm cache A = rcross build as in 1 without --no-cache (1 passes it), the build cache
#                      warm from the warm-up run: no compiler runs; new repo K per run
#                  B = podman as in 1.                                        Target: >= 20x.
#   2. no-op re-push
#                  A = the same rcross build again to the already pushed REG/rc-0 (reproducible:
#                      nothing is uploaded)
#                  B = podman manifest push --all of the already pushed list to REG/pm-0 again
#                  Target: rcross >= 3x faster.
#   2b. no-op re-push of the built image, the like-for-like comparison:
#                  A = rcross push oci:W/oci/rc-0:latest REG/rc-0:latest (no rebuild)
#                  B = the same podman manifest push as in 2.
#   2c. fresh runner, unchanged 3 x 200 MiB image (issue 5 §6: "podman recompresses and
#                  re-uploads everything"). Each platform's image is one layer of a static hello,
#                  the peers' 200 MiB pseudo-random pad200.bin (AES-CTR keystream, as
#                  ../shared/bench-peers/workload.sh makes it) and a salt file, pushed once
#                  (not timed) by each side; then per run:
#                  A = rcross build --push in a new copy of the project without .rcross (a fresh
#                      clone; its build command hard-links the files into $RCROSS_OUT, as the
#                      podman contexts hard-link them) to the same tag: layers the registry has
#                      are reused (diff_id by SHA-256 only), nothing is compressed or uploaded
#                  B = podman with new, empty storage (its own --root: no layers) and an empty
#                      blob-info cache (a tmpfs on /var/lib/containers/cache in a private mount
#                      namespace): build --platform P x3 of FROM scratch / COPY rootfs/ /,
#                      manifest create + add x3, manifest push --all to the same tag
#                  Target: rcross >= 5x faster.
#   3. diagnostic  A = rcross plan --lang c for the three platforms (host facts only, no build)
#                  B = the helper programs rcross runs for its host facts, in a row:
#                      python3 -c 'import ziglang', rustup target list --installed, python3 -m pip --version
#
# Timing: pair.sh from the peers' scripts (GNU time; 1 warm-up of each, then RUNS runs A B A B ...;
# min/median/max and the median of the pair-by-pair A/B ratio), taken from $BENCH_PEERS or
# ../shared/bench-peers next to the repository, else the copy in bench/pair.sh.
#
# Everything it creates lives under $W (default /tmp/rcross-bench-build) and is removed at the
# end: its own docker-registry on a free 127.0.0.1 port, its own podman storage
# ($W/podman-DRIVER, so podman images of other users are never touched), the OCI layouts.
# Needs root (podman), and: podman docker-registry skopeo time curl make gcc gcc-aarch64-linux-gnu
# gcc-arm-linux-gnueabihf python3 and a Rust toolchain (builds rcross in release mode once;
# RCROSS=path skips that). PODMAN_DRIVER=overlay|vfs forces podman's storage driver (default:
# overlay if it works here, else vfs). KEEP=1 keeps $W (registry data, layouts, logs).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SELF=$ROOT/bench/build.sh
PLATS=linux/amd64,linux/arm64,linux/arm/v7
ARCHES=(amd64 arm64 armv7)
declare -A PLAT=([amd64]=linux/amd64 [arm64]=linux/arm64 [armv7]=linux/arm/v7)
declare -A CCOF=([amd64]=gcc [arm64]=aarch64-linux-gnu-gcc [armv7]=arm-linux-gnueabihf-gcc)
IMG=localhost/rcross-bench

# ---- the timed operations (run by pair.sh as: bench/build.sh __op NAME) --------------------
# Environment from the driver below: W REG RCROSS PODMAN_OPTS (exported).
next() { # next run number for counter $1 (each run of a "new image" op gets a new repository)
  local f=$W/ctr/$1 k; mkdir -p "$W/ctr"; k=$(cat "$f" 2>/dev/null || echo 0)
  echo $((k + 1)) > "$f"; echo "$k"; }
pm() { # shellcheck disable=SC2086
  podman $PODMAN_OPTS "$@"; }
rcross_build() { # REPO [ARGS]: the rcross side, JSON report kept in $W/json/REPO-N.json
  local n r=$1; shift; n=$(next "json-$r"); mkdir -p "$W/json"
  "$RCROSS" build "$ROOT/examples/hello" --platform "$PLATS" -t "$REG/$r:latest" --push \
    --output "oci:$W/oci/$r" --json "$@" > "$W/json/$r-$n.json"; }
op() {
  case $1 in
    rcross-new) rcross_build "rc-$(next rc)" --no-cache ;;
    rcross-warm) rcross_build "rcw-$(next rcw)" ;; # build cache warm from the warm-up run
    podman-new)
      local k d a pids=()
      k=$(next pm); d=$W/ctx/pm-$k
      for a in "${ARCHES[@]}"; do
        mkdir -p "$d/$a"
        make -s -C "$ROOT/examples/hello" CC="${CCOF[$a]}" OUT="$d/$a/hello" & pids+=($!)
        printf '%s\n' 'FROM scratch' 'COPY hello /usr/bin/hello' \
          'LABEL org.opencontainers.image.title=hello' 'ENTRYPOINT ["/usr/bin/hello"]' > "$d/$a/Containerfile"
      done
      for p in "${pids[@]}"; do wait "$p"; done
      for a in "${ARCHES[@]}"; do
        pm build -q --no-cache --platform "${PLAT[$a]}" -t "$IMG:$a-$k" "$d/$a" > /dev/null
      done
      pm manifest create "$IMG:list-$k" > /dev/null
      for a in "${ARCHES[@]}"; do pm manifest add "$IMG:list-$k" "containers-storage:$IMG:$a-$k" > /dev/null; done
      pm manifest push -q --all --tls-verify=false "$IMG:list-$k" "docker://$REG/pm-$k:latest" ;;
    rcross-repush) rcross_build rc-0 ;;
    rcross-push) "$RCROSS" push "oci:$W/oci/rc-0:latest" "$REG/rc-0:latest" > /dev/null ;;
    podman-repush) pm manifest push -q --all --tls-verify=false "$IMG:list-0" "docker://$REG/pm-0:latest" ;;
    rcross-fresh) # a new copy of the project, as a fresh clone has it (made untimed by fresh_setup)
      local k; k=$(next rcf)
      [ -d "$W/fresh/rc/$k" ] || { echo "fresh copy $k not prepared" >&2; exit 3; }
      mkdir -p "$W/json"
      "$RCROSS" build "$W/fresh/rc/$k" --platform "$PLATS" -t "$REG/rc-fresh:latest" --push \
        --json > "$W/json/fresh-$k.json" ;;
    podman-fresh) # new, empty podman storage every run, and an empty blob-info cache: podman
      # keeps that cache in /var/lib/containers/cache whatever --root says, so it gets a tmpfs
      # there in a private mount namespace (the machine's own cache is never touched)
      unshare --mount --propagation private "$SELF" __op podman-fresh-ns "$(next pmf)" ;;
    podman-fresh-ns)
      local k=$2 a o
      mkdir -p /var/lib/containers/cache && mount -t tmpfs rcross-bench /var/lib/containers/cache
      o="--root $W/fresh/pm/$k/root --runroot $W/fresh/pm/$k/run --storage-driver $DRIVER"
      for a in "${ARCHES[@]}"; do
        # shellcheck disable=SC2086
        podman $o build -q --platform "${PLAT[$a]}" -t "$IMG:fresh-$a" "$W/fresh/ctx/$a" > /dev/null
      done
      # shellcheck disable=SC2086
      podman $o manifest create "$IMG:fresh-list" > /dev/null
      for a in "${ARCHES[@]}"; do
        # shellcheck disable=SC2086
        podman $o manifest add "$IMG:fresh-list" "containers-storage:$IMG:fresh-$a" > /dev/null
      done
      # shellcheck disable=SC2086
      podman $o manifest push -q --all --tls-verify=false "$IMG:fresh-list" "docker://$REG/pm-fresh:latest" ;;
    rcross-plan) "$RCROSS" plan --lang c --platform "$PLATS" ;;
    helpers)
      python3 -c 'import os, ziglang; print(os.path.dirname(ziglang.__file__))' || true
      rustup target list --installed || true
      python3 -m pip --version || true ;;
    *) echo "unknown op $1" >&2; exit 2 ;;
  esac
}
if [ "${1:-}" = __op ]; then shift; op "$@"; exit; fi

# The fresh-runner workload (untimed): per arch a static hello (the Makefile's compilers and
# flags), the peers' pad200.bin and a salt; podman contexts under $W/fresh/ctx/ARCH, the rcross
# project under $W/fresh/src and COUNT hard-linked copies of it (fresh clones) under
# $W/fresh/rc/K. Both sides push once so the registry has the image.
fresh_setup() { # COUNT
  local a f=$W/fresh k
  mkdir -p "$f/src" "$f/rc" "$f/pm"
  { openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f \
      -iv 00000000000000000000000000000200 -in /dev/zero 2> /dev/null || true; } |
    head -c $((200 * 1024 * 1024)) > "$f/src/pad.bin"
  [ "$(stat -c %s "$f/src/pad.bin")" = 209715200 ] || { echo "could not make pad.bin (openssl)" >&2; exit 1; }
  for a in "${ARCHES[@]}"; do
    make -s -C "$ROOT/examples/hello" CC="${CCOF[$a]}" OUT="$f/src/hello-$a"
    echo "pad200 fresh $a" > "$f/src/salt-$a"
    mkdir -p "$f/ctx/$a/rootfs"
    ln "$f/src/hello-$a" "$f/ctx/$a/rootfs/hello"; ln "$f/src/pad.bin" "$f/ctx/$a/rootfs/pad.bin"
    ln "$f/src/salt-$a" "$f/ctx/$a/rootfs/salt"
    printf 'FROM scratch\nCOPY rootfs/ /\nENTRYPOINT ["/hello"]\n' > "$f/ctx/$a/Containerfile"
  done
  cat > "$f/src/rcross.toml" << 'TOML'
[image]
name = "fresh"
platforms = ["linux/amd64", "linux/arm64", "linux/arm/v7"]
[build]
# The "build" puts the prepared files into the output (hard links, as the podman contexts).
command = 'case $RCROSS_PLATFORM in linux/amd64) a=amd64 ;; linux/arm64) a=arm64 ;; *) a=armv7 ;; esac; for n in hello-$a:hello pad.bin:pad.bin salt-$a:salt; do ln -f "${n%%:*}" "$RCROSS_OUT/${n#*:}" 2> /dev/null || cp "${n%%:*}" "$RCROSS_OUT/${n#*:}"; done'
lang = "c"
[[artifact]]
from = "hello"
to = "/hello"
mode = "0755"
[[artifact]]
from = "pad.bin"
to = "/pad.bin"
mode = "0644"
[[artifact]]
from = "salt"
to = "/salt"
mode = "0644"
[config]
entrypoint = ["/hello"]
TOML
  for k in $(seq 0 "$1"); do cp -al "$f/src" "$f/rc/$k"; done
  "$SELF" __op rcross-fresh > /dev/null 2>&1 || { echo "rcross first push of the fresh-runner image failed" >&2; exit 1; }
  "$SELF" __op podman-fresh > /dev/null || { echo "podman first push of the fresh-runner image failed" >&2; exit 1; }
}

# ---- driver ---------------------------------------------------------------------------------
RUNS=${1:-5}
export W=${W:-/tmp/rcross-bench-build}
# rcross's build cache lives under $W too, so runs start cold and the user's cache is untouched
export XDG_CACHE_HOME=$W/xdg-cache
[ "$(id -u)" = 0 ] || { echo "run as root (podman with its own storage root)" >&2; exit 1; }
for t in podman docker-registry skopeo curl make gcc aarch64-linux-gnu-gcc arm-linux-gnueabihf-gcc python3 openssl unshare; do
  command -v "$t" > /dev/null || { echo "missing $t; on Debian: apt-get install -y podman docker-registry skopeo time curl make gcc gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf python3 openssl util-linux" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "missing GNU time (apt-get install -y time)" >&2; exit 1; }
PAIR=
for d in "${BENCH_PEERS:-}" "$ROOT/../shared/bench-peers"; do
  [ -n "$d" ] && [ -x "$d/pair.sh" ] && { PAIR=$(cd "$d" && pwd)/pair.sh; break; }
done
PAIR=${PAIR:-$ROOT/bench/pair.sh}
if [ -z "${RCROSS:-}" ]; then (cd "$ROOT" && cargo build --release --quiet); RCROSS=$ROOT/target/release/rcross; fi
export RCROSS

rm -rf "$W"; mkdir -p "$W"
REG_PID=
cleanup() {
  set +e
  [ -n "${PODMAN_OPTS:-}" ] && { pm rmi -a -f > /dev/null 2>&1; pm system prune -a -f > /dev/null 2>&1; }
  [ -n "$REG_PID" ] && kill "$REG_PID" 2> /dev/null && wait "$REG_PID" 2> /dev/null
  # overlay may leave mounts under the storage root; unmount only what is below $W
  awk -v w="$W/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2> /dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# registry: distribution v2 on a free loopback port, plain HTTP
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export REG=127.0.0.1:$PORT
printf '%s\n' 'version: 0.1' 'log:' '  level: error' 'storage:' '  filesystem:' \
  "    rootdirectory: $W/registry" '  delete:' '    enabled: true' 'http:' "  addr: $REG" > "$W/registry.yml"
docker-registry serve "$W/registry.yml" > "$W/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do curl -fs "http://$REG/v2/" > /dev/null && break; sleep 0.1; done
curl -fs "http://$REG/v2/" > /dev/null || { echo "registry did not start:" >&2; cat "$W/registry.log" >&2; exit 1; }

# podman: own storage root; overlay if a FROM scratch build works with it, else vfs
probe_driver() {
  export DRIVER=$1
  export PODMAN_OPTS="--root $W/podman-$1/root --runroot $W/podman-$1/run --storage-driver $1"
  mkdir -p "$W/probe" && echo x > "$W/probe/f" && printf 'FROM scratch\nCOPY f /f\n' > "$W/probe/Containerfile"
  pm info > /dev/null 2>&1 && pm build -q --no-cache -t "$IMG:probe" "$W/probe" > /dev/null 2>&1 &&
    pm rmi -f "$IMG:probe" > /dev/null 2>&1; }
if [ -n "${PODMAN_DRIVER:-}" ]; then probe_driver "$PODMAN_DRIVER" || { echo "podman does not work with $PODMAN_DRIVER" >&2; exit 1; }
else probe_driver overlay || probe_driver vfs || { echo "podman works neither with overlay nor vfs" >&2; exit 1; }
fi

echo "== rcross build vs podman, examples/hello for $PLATS"
echo "   $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $RUNS runs each + 1 warm-up each, registry $REG"
echo "   rcross $("$RCROSS" --version 2>/dev/null | awk '{print $2}') ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo ?)), $(podman --version), storage $(pm info --format '{{.Store.GraphDriverName}}'), timing: $PAIR"
echo
# ONLY="fresh-runner new-image" runs just those measurements (default: all; the no-op ones
# re-push what new-image pushed, so they need it).
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
m() { local name=$1; shift; want "$name" || return 0
      echo "-- $name"; "$PAIR" "$RUNS" "$@" | tee "$W/$name.txt"; echo; }
m new-image  "$SELF __op rcross-new"    "$SELF __op podman-new"
m warm-cache "$SELF __op rcross-warm" "$SELF __op podman-new"
m no-op-push "$SELF __op rcross-repush" "$SELF __op podman-repush"
m no-op-push-layout "$SELF __op rcross-push" "$SELF __op podman-repush"
if want fresh-runner; then fresh_setup $((RUNS + 2)); fi
m fresh-runner "$SELF __op rcross-fresh" "$SELF __op podman-fresh"
m diag-host-facts "$SELF __op rcross-plan" "$SELF __op helpers"

# ---- checks (not timed): what landed in the registry, what rcross uploaded ----------------------
plats() { skopeo inspect --raw --tls-verify=false "docker://$REG/$1:latest" |
  python3 -c 'import json,sys; print(" ".join("/".join(filter(None,(m["platform"]["os"],m["platform"]["architecture"],m["platform"].get("variant")))) for m in json.load(sys.stdin)["manifests"]))'; }
jf() { python3 -c 'import json,sys
d=json.load(open(sys.argv[1])); p=d["pushed"][0]
print(d["index_digest"], "uploaded", p["blobs_uploaded"], "present", p["blobs_present"], "bytes", p["bytes_uploaded"])' "$1"; }
echo "-- checks"
if want new-image; then
  last=$(( $(cat "$W/ctr/rc") - 1 ))
  echo "registry rc-$last: $(plats "rc-$last")"
  echo "registry pm-$last: $(plats "pm-$last")"
  echo "rcross new-image runs (index digest, blobs):"
  for f in "$W"/json/rc-[1-9]*-0.json; do echo "   $(basename "$f" -0.json): $(jf "$f")"; done
fi
if want warm-cache; then
  echo "rcross warm-cache runs (index digest, blobs, platforms cached):"
  for f in "$W"/json/rcw-*-0.json; do
    echo "   $(basename "$f" -0.json): $(jf "$f"), cached $(python3 -c 'import json,sys; print(sum(p["cached"] for p in json.load(open(sys.argv[1]))["platforms"]))' "$f")/3"
  done
fi
if want no-op-push; then
  echo "rcross no-op runs:"; for f in "$W"/json/rc-0-[1-9]*.json; do echo "   $(basename "$f" .json): $(jf "$f")"; done
fi
if want fresh-runner; then
  echo "registry rc-fresh: $(plats rc-fresh); pm-fresh: $(plats pm-fresh)"
  echo "rcross fresh-runner runs (index digest, blobs; run 0 is the first push, untimed):"
  for f in $(ls "$W"/json/fresh-*.json | sort -t- -k2 -n); do
    echo "   $(basename "$f" .json): $(jf "$f"), reused $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1])).get("reused_layers", [])))' "$f")"
  done
fi
echo

# ---- summary --------------------------------------------------------------------------------
col() { awk -v k="$2" '$0 ~ "^"k {print $(NF-1)}' "$W/$1.txt"; }   # median column
row() { local name=$1 target=$2 a b r
  a=$(col "$name" "A wall s"); b=$(col "$name" "B wall s"); r=$(col "$name" "A/B wall")
  printf '%-16s %10s %10s %12s %12s   %s\n' "$name" "$a" "$b" "$r" \
    "$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2fx", (a>0)?b/a:0}')" "$target"; }
echo "== summary (wall seconds, medians of $RUNS runs; load now $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-16s %10s %10s %12s %12s   %s\n' "" "A median" "B median" "A/B pairs" "speedup B/A" "target"
want new-image && row new-image "rcross >= 5x faster (A=rcross --no-cache, B=podman)"
want warm-cache && row warm-cache "rcross >= 20x faster (A=rcross, build cache warm, B=podman)"
want no-op-push && row no-op-push "rcross >= 3x faster (A=rcross build --push, B=podman)"
want no-op-push-layout && row no-op-push-layout "rcross >= 3x faster (A=rcross push of the layout, B=podman)"
want fresh-runner && row fresh-runner "rcross >= 5x faster (A=rcross fresh clone, B=podman fresh storage; 3 x 200 MiB)"
want diag-host-facts && row diag-host-facts "(A=rcross plan, B=its helper programs in a row)"
true
