#!/usr/bin/env bash
# bench/scaling.sh [RUNS]: how rcross's build + push cost grows with the work (issue 13 §4).
# Not a test; prints a table of median wall seconds and peak RSS (GNU time) per case.
#
#   platforms  rcross build examples/hello --no-cache --push for 1, 3, 6, 9 platforms (every
#              platform with a cross compiler here, as `rcross plan` picks it: arm/v6 gets zig cc),
#              a new repository per run; lower bound:
#              the same compile commands alone, in parallel, with each platform's `rcross env`
#              (captured before timing).
#   files      one platform (linux/amd64), an image of 1k, 10k, 100k small files (64 bytes each,
#              one directory) that the build command hard-links into $RCROSS_OUT; lower bound: that
#              command alone.
#   layer      one platform, one file of 100 MiB, 1 GiB (4 GiB with BIG=1) of pseudo-random bytes
#              (AES-CTR keystream, incompressible), hard-linked into $RCROSS_OUT; the reference is
#              `cat FILE > /dev/null` (reading the bytes once), not a bound on compressing them.
#
# Peak RSS is GNU time's: the largest of rcross and every process it waited for (the compilers
# too; zig's first run builds its libc and peaks near 300 MiB).
#
# Everything lives under $W (default /tmp/rcross-bench-scaling) and is removed at the end (KEEP=1
# keeps it): a docker-registry on a free 127.0.0.1 port, the projects, the OCI layouts. Disk:
# about 3 x the largest layer (file, layout, registry). Needs: docker-registry curl make time openssl python3 and the cross
# compilers gcc-{aarch64,arm,arm-linux-gnueabi,riscv64,powerpc64le,s390x,i686}-linux-gnu*.
# ONLY="platforms files layer" picks parts; RCROSS=path skips building rcross.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${1:-3}
export W=${W:-/tmp/rcross-bench-scaling}
export XDG_CACHE_HOME=$W/xdg-cache
ALL=(linux/amd64 linux/arm64 linux/arm/v7 linux/arm/v6 linux/arm/v5 linux/riscv64 linux/ppc64le linux/s390x linux/386)
for t in docker-registry curl make openssl python3; do
  command -v "$t" > /dev/null || { echo "missing $t (apt-get install -y docker-registry curl make openssl python3)" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "missing GNU time (apt-get install -y time)" >&2; exit 1; }
if [ -z "${RCROSS:-}" ]; then (cd "$ROOT" && cargo build --release --quiet); RCROSS=${CARGO_TARGET_DIR:-$ROOT/target}/release/rcross; fi
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }

rm -rf "$W"; mkdir -p "$W"
REG_PID=
cleanup() {
  set +e
  [ -n "$REG_PID" ] && kill "$REG_PID" 2> /dev/null && wait "$REG_PID" 2> /dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
printf '%s\n' 'version: 0.1' 'log:' '  level: error' 'storage:' '  filesystem:' \
  "    rootdirectory: $W/registry" 'http:' "  addr: $REG" > "$W/registry.yml"
docker-registry serve "$W/registry.yml" > "$W/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do curl -fs "http://$REG/v2/" > /dev/null && break; sleep 0.1; done
curl -fs "http://$REG/v2/" > /dev/null || { echo "registry did not start:" >&2; cat "$W/registry.log" >&2; exit 1; }

# measure NAME CMD...: RUNS runs under GNU time; appends "NAME wall_median rss_max_MiB" to $W/rows
K=0
measure() {
  local name=$1 i; shift
  : > "$W/t"
  for i in $(seq "$RUNS"); do
    K=$((K + 1)); export K
    /usr/bin/time -a -o "$W/t" -f '%e %M' bash -c "$*" > "$W/last.out" 2> "$W/last.err" ||
      { echo "$name failed:" >&2; tail -20 "$W/last.err" >&2; exit 1; }
  done
  python3 - "$name" "$W/t" >> "$W/rows" << 'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[2]) if l.strip() and l.split()[0][0].isdigit()]
print(sys.argv[1], "%.3f" % statistics.median(float(r[0]) for r in rows),
      "%.1f" % (max(int(r[1]) for r in rows) / 1024))
PY
  tail -1 "$W/rows"
}
: > "$W/rows"
echo "== rcross scaling: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $RUNS runs per case, registry $REG"
echo "   rcross $("$RCROSS" --version | awk '{print $2}') ($(cd "$ROOT" && git rev-parse --short HEAD))"

# ---- platforms ----------------------------------------------------------------------------
if want platforms; then
  "$RCROSS" plan --lang c --platform "$(IFS=,; echo "${ALL[*]}")" > "$W/plan.txt" 2>&1 ||
    { echo "rcross plan cannot build every platform:" >&2; cat "$W/plan.txt" >&2; exit 1; }
  for p in "${ALL[@]}"; do "$RCROSS" env "$p" > "$W/env-${p//\//-}.sh"; done
  for n in 1 3 6 9; do
    ps=("${ALL[@]:0:n}"); list=$(IFS=,; echo "${ps[*]}")
    measure "platforms-$n-rcross" "'$RCROSS' build '$ROOT/examples/hello' --no-cache --platform $list \
      -t $REG/plat$n-\$K:latest --push --output oci:$W/oci/plat$n-\$K"
    bare=""
    for p in "${ps[@]}"; do
      s=${p//\//-}
      bare+="( . '$W/env-$s.sh'; make -s -C '$ROOT/examples/hello' CC=\"\$CC\" OUT='$W/bare-$s' -B ) & "
    done
    measure "platforms-$n-compilers" "${bare} wait"
    rm -rf "$W/oci"
  done
fi

# ---- files --------------------------------------------------------------------------------
project() { # DIR: an rcross.toml whose build hard-links DIR/data/* into the output
  cat > "$1/rcross.toml" << 'TOML'
[image]
name = "scaling"
platforms = ["linux/amd64"]
[build]
command = 'mkdir -p "$RCROSS_OUT/data" && cp -al data/. "$RCROSS_OUT/data/"'
lang = "c"
[[artifact]]
from = "data/*"
to = "/data/"
mode = "0644"
TOML
}
if want files; then
  for n in 1000 10000 100000; do
    d=$W/files-$n; mkdir -p "$d/data"
    python3 - "$d/data" "$n" << 'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(d, "f%06d" % i), "wb") as f:
        f.write(("file %06d " % i).encode().ljust(64, b"."))
PY
    project "$d"
    measure "files-${n}-rcross" "'$RCROSS' build '$d' --no-cache -t $REG/files$n-\$K:latest --push --output oci:$W/oci/files$n-\$K"
    measure "files-${n}-command" "cd '$d' && rm -rf '$W/out' && mkdir -p '$W/out/data' && cp -al data/. '$W/out/data/'"
    rm -rf "$W/oci" "$W/out" "$d"
  done
fi

# ---- one big layer ------------------------------------------------------------------------
if want layer; then
  sizes=(100 1024); [ -n "${BIG:-}" ] && sizes+=(4096)
  for mib in "${sizes[@]}"; do
    d=$W/layer-$mib; mkdir -p "$d/data"
    { openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f \
        -iv 00000000000000000000000000000200 -in /dev/zero 2> /dev/null || true; } |
      head -c $((mib * 1024 * 1024)) > "$d/data/pad.bin"
    project "$d"
    measure "layer-${mib}MiB-rcross" "'$RCROSS' build '$d' --no-cache -t $REG/layer$mib-\$K:latest --push --output oci:$W/oci/layer$mib-\$K"
    measure "layer-${mib}MiB-read" "cat '$d/data/pad.bin' > /dev/null"
    rm -rf "$W/oci" "$d" "$W/registry/docker/registry/v2/blobs"
  done
fi

echo
echo "== table (median wall s of $RUNS runs; peak RSS MiB, max over runs)"
python3 - "$W/rows" << 'PY'
import sys
rows = {}
for l in open(sys.argv[1]):
    name, wall, rss = l.split()
    case, _, side = name.rpartition("-")
    rows.setdefault(case, {})[side] = (float(wall), float(rss))
print("| case | rcross wall s | rcross peak RSS MiB | lower bound wall s | rcross / bound |")
print("|---|---|---|---|---|")
for case, sides in rows.items():
    a = sides.get("rcross")
    b = next((v for k, v in sides.items() if k != "rcross"), None)
    ratio = "%.2f" % (a[0] / b[0]) if a and b and b[0] > 0 else "-"
    print("| %s | %.3f | %.1f | %s | %s |" % (case, a[0], a[1], "%.3f" % b[0] if b else "-", ratio))
PY
