#!/usr/bin/env bash
# bench/push.sh [RUNS]: three new 200 MiB layers, rcross's writer + push against its floors,
# side by side in one run on this machine. Not a test; prints medians and ratios.
#
#   incompressible (urandom):  rcross (tar + gzip on every core + sha256 x2 + push)
#                              vs curl: raw monolithic upload of the same 3 x 200 MiB bytes
#                              (digest known beforehand; no tar, no compression, no hashing)
#   compressible (system libs): rcross vs pigz -6 (compression only, on every core)
#                              and vs gzip -6 (one core)
#
# Each timed run pushes to a new repository, so every blob is really uploaded; runs of the
# two sides alternate (A B A B ...) so a drift of the machine hits both. Needs: docker-registry,
# curl, pigz, gzip, a Rust toolchain (builds the oci_push_dir bench example in release mode once).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
W=${W:-/tmp/rcross-bench-push}
MIB=200

for tool in docker-registry curl pigz gzip cargo; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y ${tool/cargo/rustc})" >&2; exit 1; }
done
cargo build --release --quiet --example oci_push_dir
OCI_PUSH_DIR=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/oci_push_dir

mkdir -p "$W"
# --- inputs (not timed) ------------------------------------------------------------------
make_inputs() {
  for i in 1 2 3; do
    d=$W/random/$i; mkdir -p "$d"
    [ -s "$d/data.bin" ] || head -c $((MIB << 20)) /dev/urandom > "$d/data.bin"
    d=$W/libs/$i; mkdir -p "$d"
    if [ ! -s "$d/data.bin" ]; then
      # Real binaries, a different rotation per layer so the three differ.
      find /usr/lib/x86_64-linux-gnu /usr/bin -type f -size +64k 2>/dev/null | sort | \
        awk -v s="$i" 'NR % 3 == s % 3 {print} NR % 3 != s % 3 {rest[NR]=$0} END{for (k in rest) print rest[k]}' | \
        xargs cat 2>/dev/null | head -c $((MIB << 20)) > "$d/data.bin" || true
    fi
  done
  for i in 1 2 3; do
    sha256sum "$W/random/$i/data.bin" | cut -d' ' -f1 > "$W/random/$i/data.bin.sha256"
  done
}
make_inputs

# --- registry ----------------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
rm -rf "$W/registry"; mkdir -p "$W/registry"
cat > "$W/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $W/registry/data
  delete:
    enabled: true
http:
  addr: $REG
YML
docker-registry serve "$W/registry.yml" > "$W/registry.log" 2>&1 &
REG_PID=$!
trap 'kill $REG_PID 2>/dev/null; rm -rf "$W/layout" "$W/registry"' EXIT
for _ in $(seq 100); do curl -fs "http://$REG/v2/" >/dev/null && break; sleep 0.1; done

# --- operations --------------------------------------------------------------------------
n=0
rcross_push() { # SET
  n=$((n + 1)); rm -rf "$W/layout"
  "$OCI_PUSH_DIR" --layout "$W/layout" --push "$REG/bench-$1-$n:latest" \
    "$W/$1/1" "$W/$1/2" "$W/$1/3" > "$W/last-rcross.json"
}
curl_upload() { # raw monolithic upload of the three random files, digests known
  n=$((n + 1))
  for i in 1 2 3; do
    f=$W/random/$i/data.bin
    loc=$(curl -fsS -X POST -D - -o /dev/null "http://$REG/v2/curl-$n/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    case $loc in http*) ;; *) loc=http://$REG$loc ;; esac
    sep='?'; case $loc in *\?*) sep='&' ;; esac
    curl -fsS -X PUT -H 'Content-Type: application/octet-stream' -T "$f" \
      "$loc${sep}digest=sha256:$(cat "$f.sha256")" -o /dev/null
  done
}
pigz6() { for i in 1 2 3; do pigz -6 -c "$W/libs/$i/data.bin" > /dev/null; done; }
gzip6() { for i in 1 2 3; do gzip -6 -c "$W/libs/$i/data.bin" > /dev/null; done; }

now() { date +%s.%N; }
timed() { local t0; t0=$(now); "$@"; awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.3f\n", b-a}'; }
median() { sort -n | awk '{v[NR]=$1} END{print (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2}'; }

pair() { # NAME_A CMD_A NAME_B CMD_B: warm-up once each, then RUNS alternating runs
  local na=$1 a=$2 nb=$3 b=$4 ta=() tb=()
  $a; $b
  for _ in $(seq "$RUNS"); do ta+=("$(timed $a)"); tb+=("$(timed $b)"); done
  local ma mb
  ma=$(printf '%s\n' "${ta[@]}" | median); mb=$(printf '%s\n' "${tb[@]}" | median)
  printf '%-28s median %7.3f s   (runs: %s)\n' "$na" "$ma" "${ta[*]}"
  printf '%-28s median %7.3f s   (runs: %s)\n' "$nb" "$mb" "${tb[*]}"
  awk -v a="$ma" -v b="$mb" -v na="$na" -v nb="$nb" 'BEGIN{printf "ratio %s / %s = %.2f\n\n", na, nb, a/b}'
}

echo "== $(nproc) cores, $RUNS runs each, 3 x $MIB MiB per run, registry $REG"
echo "-- incompressible layers"
pair "rcross write+push (random)" "rcross_push random" "curl raw upload (random)" curl_upload
grep -o '"size": [0-9]*' "$W/last-rcross.json" | head -3 | sed 's/^/   rcross layer /'
echo "-- compressible layers"
pair "rcross write+push (libs)" "rcross_push libs" "pigz -6 (libs)" pigz6
grep -o '"size": [0-9]*' "$W/last-rcross.json" | head -3 | sed 's/^/   rcross layer /'
echo "   pigz -6 size of layer 1: $(pigz -6 -c "$W/libs/1/data.bin" | wc -c)"
echo "-- one core, for scale"
pair "gzip -6 (libs)" gzip6 "pigz -6 (libs)" pigz6
