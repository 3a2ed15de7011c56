#!/usr/bin/env python3
"""pairms.py RUNS 'COMMAND_A' ['COMMAND_B']: the peers' pair.sh protocol with a finer clock.

pair.sh times each command with GNU time, whose wall clock has 10 ms steps and which wraps
each command in `bash -c`: right for the seconds-long peers, too coarse for a 15 ms no-op
push. This does the same (one warm-up run of each command, not counted; then RUNS runs in
turn A B A B ..., so a drift of the machine's speed hits both; min/median/max of wall
seconds, CPU seconds and peak RSS MiB; the median of the pair-by-pair A/B wall ratio) with
time.perf_counter() around fork and wait, and CPU and peak RSS from wait4's rusage.

A command is split like a shell word list (shlex) and run without a shell, unless it starts
with `sh -c` or `bash -c`. `{n}` in a command is replaced by the run number of that command
(0 for the warm-up), so each run can push to a new repository. A command that fails is
reported on stderr and its time still counted, as pair.sh does.
"""
import os
import shlex
import statistics
import subprocess
import sys
import time


def one(command, n):
    argv = shlex.split(command.replace("{n}", str(n)))
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    err = child.stderr.read().decode(errors="replace") if child.stderr else ""
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        print(f"  (exit {child.returncode}: {command})\n{err[-800:]}", file=sys.stderr)
    # ru_maxrss of the child itself (KiB); grandchildren are not waited for here.
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def stats(name, values, fmt):
    values = sorted(values)
    print(f"{name:<12} {fmt.format(values[0])} {fmt.format(statistics.median(values))} "
          f"{fmt.format(values[-1])}")


def main():
    runs, a = int(sys.argv[1]), sys.argv[2]
    b = sys.argv[3] if len(sys.argv) > 3 else None
    commands = [c for c in (a, b) if c]
    for c in commands:
        one(c, 0)
    results = {c: [] for c in commands}
    for i in range(1, runs + 1):
        for c in commands:
            results[c].append(one(c, i))
    print(f"A = {a}")
    if b:
        print(f"B = {b}")
    print(f"{'':<12} {'min':>9} {'median':>9} {'max':>9}   (n={runs} each, 1 warm-up each)")
    for tag, c in (("A", a), ("B", b)):
        if not c:
            continue
        stats(f"{tag} wall s", [r[0] for r in results[c]], "{:9.4f}")
        stats(f"{tag} cpu s", [r[1] for r in results[c]], "{:9.4f}")
        stats(f"{tag} peak MiB", [r[2] for r in results[c]], "{:9.1f}")
    if b:
        ratios = [ra[0] / rb[0] for ra, rb in zip(results[a], results[b]) if rb[0] > 0]
        stats("A/B wall", ratios, "{:9.4f}")


if __name__ == "__main__":
    main()
