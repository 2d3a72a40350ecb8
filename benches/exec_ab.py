"""Exec latency of two gatehouse builds, side by side in one run.

Usage (after building both):
    GATEHOUSE_DEMO_TARGET_USER=gatehouse-test \\
        .venv/bin/python benches/exec_ab.py OLD_BIN NEW_BIN [ROUNDS]

Starts one `gatehouse demo` per binary (each with its own sshd) and times `true` execs over
one TCP_NODELAY paramiko connection per side: through each gatehouse and straight to its
sshd, in alternating blocks of 25 back-to-back execs, 12 blocks per side (as `e2e.py` does).
The added time of each build is its p50 minus its own direct p50. With ROUNDS > 1 the whole
comparison is repeated, the two demos started in swapped order each round. On a machine whose
speed drifts (a shared VM), the difference between the two builds within one run is what to
read; the absolute added time moves with the machine.

Each demo's directory is made under its own parent when GATEHOUSE_AB_DIRS names two
(`/abA:/abB`, swapped every other round): on ext4 without a journal a file's creation scans the
inodes its directory's block group freed in the last minutes, so two builds sharing `/tmp`
would slow each other's recordings by their deletions; the last column says where each build's
demo ran that round. The CPU column is gatehouse's own CPU time per exec (user + system,
`/proc`). Two copies of one binary under different parents (one on tmpfs) compare file
systems instead of builds.
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
import conftest  # noqa: E402
from e2e import exec_true  # noqa: E402

BLOCK = 25
BLOCKS = 12


def cpu_ticks(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def one_round(bins, parents):
    demos = []
    try:
        for b, parent in zip(bins, parents):
            conftest.BIN = b
            tempfile.tempdir = parent
            demos.append(conftest.Demo())
        pairs = [(d.connect(nodelay=True), d.connect_direct(nodelay=True)) for d in demos]
        for pair in pairs:
            for client in pair:
                for _ in range(10):  # warm up: upstream pool, caches
                    exec_true(client)
        samples = {(b, side): [] for b in bins for side in ("via", "direct")}
        ticks = {b: 0 for b in bins}
        for _ in range(BLOCKS):
            for b, d, pair in zip(bins, demos, pairs):
                for side, client in zip(("via", "direct"), pair):
                    before = cpu_ticks(d.proc.pid)
                    for _ in range(BLOCK):
                        t = time.perf_counter()
                        exec_true(client)
                        samples[(b, side)].append((time.perf_counter() - t) * 1000)
                    if side == "via":
                        ticks[b] += cpu_ticks(d.proc.pid) - before
        for pair in pairs:
            for client in pair:
                client.close()
        cpu_ms = {b: ticks[b] * 1000 / os.sysconf("SC_CLK_TCK") / (BLOCK * BLOCKS) for b in bins}
        return {
            b: (
                statistics.median(samples[(b, "via")]),
                statistics.median(samples[(b, "direct")]),
                cpu_ms[b],
            )
            for b in bins
        }
    finally:
        tempfile.tempdir = None
        for d in demos:
            d.stop()


def main():
    old, new = sys.argv[1:3]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    dirs = os.environ.get("GATEHOUSE_AB_DIRS", "").split(":")
    if len(dirs) != 2 or not all(dirs):
        dirs = [None, None]
    print("| round | old added (ms) | new added (ms) | new − old (ms) | direct p50 (ms) "
          "| gatehouse CPU per exec, old / new (ms) | parent directories, old / new |")
    print("|---|---|---|---|---|---|---|")
    for r in range(rounds):
        order = [old, new] if r % 2 == 0 else [new, old]
        parents = dirs if (r // 2) % 2 == 0 else dirs[::-1]
        res = one_round(order, parents)
        added = {b: via - direct for b, (via, direct, _) in res.items()}
        parent = {b: p or tempfile.gettempdir() for b, p in zip(order, parents)}
        print(
            f"| {r + 1} | {added[old]:+.2f} | {added[new]:+.2f} | {added[new] - added[old]:+.2f} "
            f"| {res[old][1]:.2f} / {res[new][1]:.2f} | {res[old][2]:.2f} / {res[new][2]:.2f} "
            f"| {parent[old]} / {parent[new]} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
