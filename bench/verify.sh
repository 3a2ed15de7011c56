#!/usr/bin/env bash
# Benchmark `rcross verify` on a ≥ 1 GiB tree and on a gzip layer of it, next to the lower
# bounds `cat` (reading every byte of the tree) and `gzip -dc` (decompressing the layer) of the
# same bytes in the same run. Prints throughputs and the ratio rcross / lower bound
# (issue 3 §5 target: ≥ 0.80).
#
# The data set is generated once into $RCROSS_BENCH_CACHE (default ~/.cache/rcross-bench) and
# reused. Needs: python3, tar, gzip, aarch64-linux-gnu-gcc, gcc.
#   bench/verify.sh            # build release, generate if needed, measure
#   RCROSS=path/to/rcross bench/verify.sh
#   RCROSS_BENCH_GIB=2 bench/verify.sh   # a bigger tree (regenerates)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${RCROSS_BENCH_CACHE:-$HOME/.cache/rcross-bench}
gib=${RCROSS_BENCH_GIB:-1.1}
tree=$cache/tree
layer=$cache/layer.tar.gz
stamp=$cache/generated-$gib

if [[ -z ${RCROSS:-} ]]; then
    (cd "$here" && cargo build --release --quiet)
    RCROSS=$here/target/release/rcross
fi

if [[ ! -f $stamp ]]; then
    echo "generating a ${gib} GiB tree in $tree (once) ..." >&2
    rm -rf "$cache"
    mkdir -p "$cache/src"
    printf '#include <stdio.h>\nint main(void){puts("hi");return 0;}\n' >"$cache/src/h.c"
    aarch64-linux-gnu-gcc -O2 "$cache/src/h.c" -o "$cache/src/arm64-dyn"
    aarch64-linux-gnu-gcc -O2 -static "$cache/src/h.c" -o "$cache/src/arm64-static"
    gcc -O2 "$cache/src/h.c" -o "$cache/src/amd64"
    python3 - "$tree" "$gib" "$cache/src" <<'PY'
import os, random, sys
root, gib, src = sys.argv[1], float(sys.argv[2]), sys.argv[3]
rnd = random.Random(42)
total_target = int(gib * (1 << 30))
# A 32 MiB pool of mixed content (text-like and binary-like) so gzip has realistic work.
words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 10))) for _ in range(5000)]
text = b" ".join(rnd.choice(words) for _ in range(2_500_000))[: 16 << 20]
binary = bytes(rnd.getrandbits(8) for _ in range(1 << 20)) * 4
pool = (text + binary * 4)[: 32 << 20]
elfs = [open(os.path.join(src, n), "rb").read() for n in ("arm64-dyn", "arm64-static")]
written = 0
def put(path, data):
    global written
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    written += len(data)
def chunk(n):
    off = rnd.randrange(0, len(pool) - n)
    return pool[off:off + n]
# Some large files: two big ELF programs (a real header followed by data), two data files.
for i in range(4):
    body = chunk(24 << 20) * 6  # 144 MiB
    data = elfs[i % 2] + body if i < 2 else body
    put(f"{root}/opt/large/file{i}", data)
# Many small files, one in ten an ELF program.
i = 0
while written < total_target:
    d = f"{root}/usr/share/d{i // 500:04d}"
    if i % 10 == 0:
        data = elfs[i % 2]
    else:
        data = chunk(rnd.randint(512, 64 << 10))
    put(f"{d}/f{i:06d}", data)
    i += 1
print(f"{i} small files + 4 large, {written / (1 << 30):.2f} GiB", file=sys.stderr)
PY
    cp "$cache/src/amd64" "$tree/usr/share/d0000/planted-amd64"
    echo "writing $layer ..." >&2
    tar -C "$tree" -cf - . | gzip -6 >"$layer"
    touch "$stamp"
fi

tree_bytes=$(du -sb --apparent-size "$tree" | cut -f1)
layer_raw=$(gzip -l "$layer" | awk 'NR==2 {print $2}')
# gzip -l wraps at 4 GiB; measure when in doubt.
if ((layer_raw < tree_bytes)); then layer_raw=$(gzip -dc "$layer" | wc -c); fi
files=$(find "$tree" -type f | wc -l)

now() { date +%s.%N; }
measure() { # prints seconds for "$@", output discarded, any exit status
    local t0 t1
    t0=$(now)
    "$@" >/dev/null 2>&1 || true
    t1=$(now)
    echo "$t1 - $t0" | bc -l
}
mbps() { echo "scale=1; $1 / 1048576 / $2" | bc -l; }
ratio() { echo "scale=2; $2 / $1" | bc -l; } # rcross throughput / baseline = t_base / t_rcross

# Warm the page cache so every contender reads from memory.
find "$tree" -type f -print0 | xargs -0 cat >/dev/null
cat "$layer" >/dev/null

best() { # best of 3 runs
    local b="" t
    for _ in 1 2 3; do
        t=$(measure "$@")
        if [[ -z $b ]] || (($(echo "$t < $b" | bc -l))); then b=$t; fi
    done
    echo "$b"
}

catall() { find "$tree" -type f -print0 | xargs -0 cat; }
t_cat=$(best catall)
t_tree=$(best "$RCROSS" verify --platform linux/arm64 "$tree")
t_gz=$(best gzip -dc "$layer")
t_layer=$(best "$RCROSS" verify --platform linux/arm64 "$layer")

# The planted amd64 program must be found in both.
for target in "$tree" "$layer"; do
    out=$("$RCROSS" verify --platform linux/arm64 "$target" 2>&1 || true)
    if ! grep -q 'planted-amd64: built for linux/amd64' <<<"$out"; then
        echo "rcross did not find the planted binary in $target:" >&2
        echo "$out" >&2
        exit 1
    fi
done

printf 'tree:  %d files, %.2f GiB; layer: %.2f GiB gzip, %.2f GiB tar\n' "$files" \
    "$(echo "$tree_bytes / 1073741824" | bc -l)" \
    "$(echo "$(stat -c %s "$layer") / 1073741824" | bc -l)" \
    "$(echo "$layer_raw / 1073741824" | bc -l)"
printf '%-34s %8.2f s %10s MiB/s\n' "cat (every byte of the tree)" "$t_cat" "$(mbps "$tree_bytes" "$t_cat")"
printf '%-34s %8.2f s %10s MiB/s   ratio %s\n' "rcross verify tree" "$t_tree" "$(mbps "$tree_bytes" "$t_tree")" "$(ratio "$t_tree" "$t_cat")"
printf '%-34s %8.2f s %10s MiB/s\n' "gzip -dc layer" "$t_gz" "$(mbps "$layer_raw" "$t_gz")"
printf '%-34s %8.2f s %10s MiB/s   ratio %s\n' "rcross verify layer" "$t_layer" "$(mbps "$layer_raw" "$t_layer")" "$(ratio "$t_layer" "$t_gz")"
echo "(throughput = bytes of the tree / uncompressed layer per second; ratio = rcross / lower bound, target >= 0.80)"
