#!/usr/bin/env bash
# Copy of ../shared/bench-peers/pair.sh (the peers' timing harness), used by bench/build.sh only
# when that directory is absent. Keep in step with the original.
# pair.sh RUNS 'COMMAND_A' ['COMMAND_B']
# Whole-process timing with public tools only (GNU time, Debian package "time"):
# one warm-up run of each command (not counted), then RUNS runs of each, in turn
# A B A B ..., so a drift of the machine's speed hits both. Prints min/median/max of
# wall seconds, cpu (user+sys) seconds and peak RSS MiB (largest single process the
# command waited for), and the median of the pair-by-pair A/B wall ratio.
# Quote the MEDIAN.
set -euo pipefail
N=$1 A=$2 B=${3:-}
tf=$(mktemp); trap 'rm -f "$tf"' EXIT
one() { /usr/bin/time -f '%e %U %S %M' -o "$tf" bash -c "$1" >/dev/null 2>&1 </dev/null || echo "  (exit $? : $1)" >&2
        tail -n 1 "$tf" | awk '{printf "%s %.3f %.1f\n", $1, $2+$3, $4/1024}'; }
one "$A" >/dev/null; [ -z "$B" ] || one "$B" >/dev/null
ra=() rb=()
for i in $(seq "$N"); do ra+=("$(one "$A")"); [ -z "$B" ] || rb+=("$(one "$B")"); done
stats() { # col name
  sort -n | awk -v n="$2" '{v[NR]=$1} END{m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%-12s %9.3f %9.3f %9.3f\n", n, v[1], m, v[NR]}'; }
report() { local tag=$1; shift
  printf '%s\n' "$@" | awk '{print $1}' | stats 1 "$tag wall s"
  printf '%s\n' "$@" | awk '{print $2}' | stats 2 "$tag cpu s"
  printf '%s\n' "$@" | awk '{print $3}' | stats 3 "$tag peak MiB"; }
echo "A = $A"; [ -z "$B" ] || echo "B = $B"
printf '%-12s %9s %9s %9s   (n=%s each, 1 warm-up each)\n' "" min median max "$N"
report A "${ra[@]}"
if [ -n "$B" ]; then
  report B "${rb[@]}"
  for i in $(seq 0 $((N-1))); do
    awk -v a="${ra[$i]%% *}" -v b="${rb[$i]%% *}" 'BEGIN{printf "%.4f\n", (b>0)?a/b:0}'
  done | stats 1 "A/B wall"
fi
