#!/usr/bin/env bash
# bench/build.sh [RUNS]: rcross build of examples/hello for three platforms (linux/amd64,
# linux/arm64, linux/arm/v7) against its lower bound and against podman doing the same job,
# side by side in one run on this machine, then rcross setup, the scaling table and the build
# cache's invalidation tests: every figure issue 13's "Done when" asks for (and issue 5 §6's).
# Not a test; prints medians, ratios and a final table of goals met or not.
#
#   cold-overhead  A = rcross build examples/hello --platform P3 --no-cache --output oci:DIR
#                  B = the three compile commands alone, in parallel (the Makefile's compilers
#                      and flags, as rcross runs them)       goal: A <= 1.15 x B
#   cold-overhead-zstd  the same with --compression zstd (gzip -6, the default, is most of
#                  rcross's own CPU on a cold build)
#   cold-overhead-gzip1 the same with --compression-level 1 (diagnostic: the compressor's share)
#                  Each cold row also gets a floor in the summary: rcross's CPU seconds (its own
#                  and the compilers') over the cores, against B's wall time. No scheduling can
#                  beat it: where the floor is above the goal, the goal needs less CPU, not
#                  better overlap.
#   new-image      A = rcross build … -t REG/rc-N:latest --push --no-cache (a new repository N
#                      per run, so every blob is uploaded)
#                  B = podman: the three compiles in parallel, podman build --no-cache
#                      --platform P of a FROM scratch image x3, manifest create + add x3,
#                      manifest push --all (a new repository per run)   goal: >= 6x
#   warm-cache     A = rcross build … --push without --no-cache: the build cache warm from the
#                      warm-up run (no compiler runs), a new repository per run
#                  B = podman as in new-image                             goal: >= 20x
#   no-op-push     A = the same rcross build --push again to the repository the warm-up pushed
#                  B = podman manifest push --all of the list it pushed in the warm-up, again
#                                                                         goal: >= 5x
#   no-op-push-layout  A = rcross push of that layout; B = as in no-op-push (issue 5 §6)
#   fresh-runner   an unchanged 3 x 200 MiB image rebuilt and pushed with no local cache
#                  (A = rcross in a fresh copy of the project, B = podman with empty storage and
#                  blob-info cache)                                      goal: >= 5x (issue 5)
#   diag-host-facts  A = rcross plan; B = the helper programs it runs for host facts, in a row
#   setup          bench/setup.sh: rcross setup of every handler in a private binfmt_misc
#                                                                         goal: median < 50 ms
#   scaling        bench/scaling.sh's table (1/3/6/9 platforms, 1k/10k/100k files, 100 MiB /
#                  1 GiB / 4 GiB layers; BIG=0 leaves out the 4 GiB one)
#   cache-tests    cargo test --test build_cache: the build cache's invalidation tests pass
#
# Timing: bench/pairms.py, the peers' pair.sh protocol (1 warm-up each, then RUNS runs A B A B
# …; min/median/max; the median of the pair-by-pair A/B ratio) with a microsecond clock and no
# shell around the rcross commands: pair.sh's GNU time counts in 10 ms steps and its `bash -c`
# costs about as much as a no-op push. The podman commands that are several steps run through
# this script (`build.sh __op …`, a bash start, ~1% of their time).
#
# Everything it creates lives under $W (default /tmp/rcross-bench-build) and is removed at the
# end: its own docker-registry on a free 127.0.0.1 port, its own podman storage
# ($W/podman-DRIVER, so podman images of other users are never touched), the OCI layouts, and
# rcross's user cache ($W/xdg-cache: every run starts cold, the user's cache is untouched).
# Needs root (podman, setup's namespace), and: podman docker-registry skopeo time curl make gcc
# gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf python3 qemu-user-static and a Rust toolchain
# (builds rcross in release mode once; RCROSS=path skips that), plus what bench/scaling.sh
# needs. PODMAN_DRIVER=overlay|vfs forces podman's storage driver (default: overlay if it
# works here, else vfs). KEEP=1 keeps $W. ONLY="new-image no-op-push …" runs only those
# measurements (no-op-push needs new-image; SCALING=0, SETUP=0, CACHE_TESTS=0 leave those out).
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
op() {
  case $1 in
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
# $W/fresh/rc/K (K = pairms.py's run number, 0 the warm-up). Both sides push once (copy
# "first", podman's storage "first") so the registry has the image.
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
  for k in first $(seq 0 "$1"); do cp -al "$f/src" "$f/rc/$k"; done
  XDG_CACHE_HOME=$f/xdg/first "$RCROSS" build "$f/rc/first" --platform "$PLATS" \
    -t "$REG/rc-fresh:latest" --push > /dev/null 2>&1 || { echo "rcross first push of the fresh-runner image failed" >&2; exit 1; }
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
PAIR=$ROOT/bench/pairms.py
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

echo "== rcross build vs its lower bound and vs podman, examples/hello for $PLATS"
echo "   $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $RUNS runs each + 1 warm-up each, registry $REG"
echo "   rcross $("$RCROSS" --version 2>/dev/null | awk '{print $2}') ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo ?)), $(podman --version), storage $(pm info --format '{{.Store.GraphDriverName}}'), timing: $PAIR"
echo
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
m() { local name=$1; shift; want "$name" || return 0
      echo "-- $name"; python3 "$PAIR" "$RUNS" "$@" | tee "$W/$name.txt"; echo; }
mkdir -p "$W/json"
H=$ROOT/examples/hello
RC="$RCROSS build $H --platform $PLATS"
# The lower bound first; rcross's user cache (host probes, git facts) is warm from its warm-up.
# The bound: the three compiles alone, in parallel (one `sh -c`, as rcross runs each command),
# each run into a new directory (make would find an earlier output up to date).
bare() { local d=$W/$1/{n}
  echo "sh -c 'mkdir -p $d; make -s -C $H CC=${CCOF[amd64]} OUT=$d/amd64 & make -s -C $H CC=${CCOF[arm64]} OUT=$d/arm64 & make -s -C $H CC=${CCOF[armv7]} OUT=$d/armv7 & wait; test -x $d/amd64 && test -x $d/arm64 && test -x $d/armv7'"; }
m cold-overhead "$RC --no-cache --output oci:$W/cold/{n}" "$(bare bare)"
# The same with zstd layers (--compression zstd): the compressor's share of the overhead.
m cold-overhead-zstd "$RC --no-cache --compression zstd --output oci:$W/coldz/{n}" "$(bare bare-z)"
# And with gzip level 1: what the default level's CPU costs.
m cold-overhead-gzip1 "$RC --no-cache --compression-level 1 --output oci:$W/cold1/{n}" "$(bare bare-1)"
# A new image each run: SOURCE_DATE_EPOCH differs, so every layer and config is new (nothing
# for the registry to find or mount) while the caches of host facts stay warm, as on a
# developer's machine. --no-cache: every compiler runs.
m new-image "env SOURCE_DATE_EPOCH=170000{n} $RC --no-cache -t $REG/rc-{n}:latest --push --output oci:$W/oci/rc-{n} --metadata-file $W/json/rc-{n}.json" \
  "$SELF __op podman-new"
# The build cache filled by the warm-up; the same sources to a new repository each run.
m warm-cache "$RC -t $REG/rcw-{n}:latest --push --output oci:$W/oci/rcw-{n} --metadata-file $W/json/rcw-{n}.json" \
  "$SELF __op podman-new"
# new-image's warm-up pushed rc-0 (SOURCE_DATE_EPOCH 1700000) and podman's pm-0.
m no-op-push "env SOURCE_DATE_EPOCH=1700000 $RC -t $REG/rc-0:latest --push --output oci:$W/oci/rc-0 --metadata-file $W/json/noop-{n}.json" \
  "podman $PODMAN_OPTS manifest push -q --all --tls-verify=false $IMG:list-0 docker://$REG/pm-0:latest"
m no-op-push-layout "$RCROSS push oci:$W/oci/rc-0:latest $REG/rc-0:latest" \
  "podman $PODMAN_OPTS manifest push -q --all --tls-verify=false $IMG:list-0 docker://$REG/pm-0:latest"
if want fresh-runner; then fresh_setup "$RUNS"; fi
# A runner with no local cache: a fresh copy of the project and an empty user cache each run.
m fresh-runner "env XDG_CACHE_HOME=$W/fresh/xdg/{n} $RCROSS build $W/fresh/rc/{n} --platform $PLATS -t $REG/rc-fresh:latest --push --metadata-file $W/json/fresh-{n}.json" \
  "$SELF __op podman-fresh"
m diag-host-facts "$RCROSS plan --lang c --platform $PLATS" "$SELF __op helpers"

# ---- setup, scaling, the cache's tests (each its own script or command) ----------------------
SETUP_MS= CACHE_TESTS=${CACHE_TESTS:-1}
if [ "${SETUP:-1}" = 1 ]; then
  echo "-- setup (bench/setup.sh 21)"
  RCROSS=$RCROSS bash "$ROOT/bench/setup.sh" 21 | tee "$W/setup.txt"; echo
  SETUP_MS=$(awk '$1 == "A" && $2 == "fresh" {print $4}' "$W/setup.txt")
fi
if [ "${SCALING:-1}" = 1 ]; then
  echo "-- scaling (bench/scaling.sh, BIG=${BIG:-1})"
  RCROSS=$RCROSS BIG=${BIG:-1} W=$W/scaling bash "$ROOT/bench/scaling.sh" | tee "$W/scaling.txt"; echo
fi
CACHE_OK=
if [ "$CACHE_TESTS" = 1 ]; then
  echo "-- cache-tests (cargo test --test build_cache)"
  if (cd "$ROOT" && RCROSS_TEST_STRICT=1 cargo test --quiet --test build_cache 2>&1 | tail -3); then CACHE_OK=pass; else CACHE_OK=FAIL; fi
  echo
fi

# ---- checks (not timed): what landed in the registry, what rcross uploaded ----------------------
plats() { skopeo inspect --raw --tls-verify=false "docker://$REG/$1:latest" |
  python3 -c 'import json,sys; print(" ".join("/".join(filter(None,(m["platform"]["os"],m["platform"]["architecture"],m["platform"].get("variant")))) for m in json.load(sys.stdin)["manifests"]))'; }
jf() { python3 -c 'import json,sys
d=json.load(open(sys.argv[1])); p=d["pushed"][0]
print(d["index_digest"], "uploaded", p["blobs_uploaded"], "present", p["blobs_present"], "mounted", p["blobs_mounted"], "bytes", p["bytes_uploaded"], "cached", sum(x["cached"] for x in d["platforms"]), "reused", len(d.get("reused_layers", [])))' "$1"; }
echo "-- checks"
for set in "new-image rc" "warm-cache rcw" "no-op-push noop" "fresh-runner fresh"; do
  read -r name prefix <<< "$set"
  want "$name" || continue
  echo "rcross $name runs (index digest, blobs, platforms from the build cache, layers reused):"
  for f in $(ls "$W"/json/"$prefix"-*.json 2> /dev/null | sort -t- -k2 -n); do echo "   $(basename "$f" .json): $(jf "$f")"; done
done
want new-image && echo "registry rc-1: $(plats rc-1); pm-1: $(plats pm-1)"
echo

# ---- summary --------------------------------------------------------------------------------
col() { awk -v k="$2" '$0 ~ "^"k {print $(NF-1)}' "$W/$1.txt"; }   # median column
ratio() { awk -v a="$(col "$1" "A wall s")" -v b="$(col "$1" "B wall s")" 'BEGIN{printf "%.2f", (a>0)?b/a:0}'; }
verdict() { awk -v v="$1" -v op="$2" -v g="$3" 'BEGIN{ok = (op == ">=") ? v >= g : v <= g; print ok ? "met" : "NOT met"}'; }
row() { # NAME KIND(speedup|overhead) OP GOAL
  local name=$1 kind=$2 op=$3 goal=$4 a b v
  [ -f "$W/$name.txt" ] || return 0
  a=$(col "$name" "A wall s"); b=$(col "$name" "B wall s")
  if [ "$kind" = overhead ]; then v=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", (b>0)?a/b:0}'); else v=$(ratio "$name"); fi
  printf '%-18s %10s %10s %9sx   %-4s %-6s %s\n' "$name" "$a" "$b" "$v" "$op" "${goal:+${goal}x}" \
    "$([ -n "$goal" ] && verdict "$v" "$op" "$goal")"; }
floor() { # NAME LABEL: rcross's CPU over the cores, against B's wall (the best ratio its CPU allows)
  [ -f "$W/$1.txt" ] || return 0
  awk -v c="$(col "$1" "A cpu s")" -v b="$(col "$1" "B wall s")" -v n="$(nproc)" -v k="$2" \
    'BEGIN{f=c/n; if (f<b) f=b; printf "%-18s %10.4f %10s %9.2fx   (A cpu %.4f s / %d cores: no overlap beats it)\n", k, f, b, (b>0)?f/b:0, c, n}'; }
echo "== summary (wall seconds, medians of $RUNS runs; load now $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-18s %10s %10s %10s   %s\n' "" "A median" "B median" "value" "goal"
row cold-overhead overhead "<=" 1.15
row cold-overhead-zstd overhead "<=" 1.15
row cold-overhead-gzip1 overhead "" ""
floor cold-overhead " floor (gzip -6)"
floor cold-overhead-zstd " floor (zstd)"
floor cold-overhead-gzip1 " floor (gzip -1)"
row new-image speedup ">=" 6
row warm-cache speedup ">=" 20
row no-op-push speedup ">=" 5
row no-op-push-layout speedup ">=" 3
row fresh-runner speedup ">=" 5
row diag-host-facts speedup "" ""
[ -n "$SETUP_MS" ] && printf '%-18s %10s ms %20s   %-4s %-6s %s\n' setup "$SETUP_MS" "" "<" "50 ms" \
  "$(verdict "$SETUP_MS" "<=" 49.999)"
[ -f "$W/scaling.txt" ] && echo "scaling            table above (bench/scaling.sh)"
[ -n "$CACHE_OK" ] && echo "cache-tests        $CACHE_OK"
true
