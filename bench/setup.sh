#!/usr/bin/env bash
# bench/setup.sh [RUNS]: `rcross setup` of every handler (with self-tests) and `rcross info`, in a
# private user+mount namespace with its own binfmt_misc (Linux >= 6.7), so the machine's handlers
# are never touched (issue 13 §3). Not a test; prints min/median/max milliseconds.
#
#   fresh       rcross setup after rcross setup --uninstall: 13 probes, 13 registrations,
#               13 self-tests          target: median < 50 ms
#   registered  rcross setup again: every handler is already registered and correct; each is
#               still self-tested
#   info        rcross info             target: median < 30 ms
#
# OLD=path runs an older binary side by side (A = RCROSS, B = OLD, runs interleaved A B A B …),
# e.g. one built from main:  git worktree add /tmp/rc-old main &&
#   (cd /tmp/rc-old && cargo build --release) && OLD=/tmp/rc-old/target/release/rcross bench/setup.sh
# Needs qemu-user-static and unshare (util-linux); RCROSS=path skips the release build.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${1:-21}
if [ "${1:-}" = __ns ]; then
  # inside the namespace: $2 runs, then the binaries
  shift; RUNS=$1; shift
  T=$(mktemp -d); BM=$T/bm; mkdir -p "$BM" "$T/pre"
  # until it mounts one, a user namespace sees its parent's handlers
  mount -t binfmt_misc binfmt_misc "$T/pre"; mount -t binfmt_misc binfmt_misc "$BM"
  ms() { local a b; a=$(date +%s%N); "$@" > /dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
         b=$(date +%s%N); echo $(((b - a) / 1000)); }
  rc() { local bin=$1; shift; "$bin" "$@" --binfmt-misc "$BM" --binfmt-dir "$T/none"; }
  for bin in "$@"; do rc "$bin" setup > /dev/null; done   # warm-up (page cache, qemu)
  for _ in $(seq "$RUNS"); do
    for i in $(seq $#); do
      bin=${!i}
      rc "$bin" setup --uninstall > /dev/null
      echo "$i fresh $(ms rc "$bin" setup)"
      echo "$i registered $(ms rc "$bin" setup)"
      echo "$i info $(ms rc "$bin" info)"
    done
  done
  # the last setup left every handler registered: count them
  echo "# entries $(ls "$BM" | grep -vc -e '^register$' -e '^status$')"
  umount "$BM" "$T/pre"; rm -rf "$T"
  exit
fi
command -v unshare > /dev/null || { echo "missing unshare (apt-get install util-linux)" >&2; exit 1; }
command -v qemu-aarch64-static > /dev/null || { echo "missing qemu-user-static (apt-get install qemu-user-static)" >&2; exit 1; }
if [ -z "${RCROSS:-}" ]; then (cd "$ROOT" && cargo build --release --quiet); RCROSS=$ROOT/target/release/rcross; fi
bins=("$RCROSS"); [ -n "${OLD:-}" ] && bins+=("$OLD")
out=$(unshare --user --map-root-user --mount -- bash "$0" __ns "$RUNS" "${bins[@]}")
echo "== rcross setup / info in a private binfmt_misc, $RUNS runs each, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   A = $RCROSS${OLD:+, B = $OLD}; $(grep '^# entries' <<< "$out" | cut -c3-) registered at the end"
printf '%-4s %-12s %8s %8s %8s   %s\n' "" op "min ms" "median" "max" target
for i in $(seq ${#bins[@]}); do
  side=$([ "$i" = 1 ] && echo A || echo B)
  for op in fresh registered info; do
    awk -v i="$i" -v op="$op" '$1 == i && $2 == op {print $3}' <<< "$out" | sort -n |
      awk -v s="$side" -v op="$op" '{v[NR] = $1} END {
        t = (op == "info") ? "< 30 ms" : "< 50 ms";
        printf "%-4s %-12s %8.1f %8.1f %8.1f   %s\n", s, op, v[1] / 1000, v[int((NR + 1) / 2)] / 1000, v[NR] / 1000, t }'
  done
done
