"""End-to-end bench harness: gatehouse vs the same sshd directly, side by side in one run.

Usage (after `cargo build --release`):
    GATEHOUSE_BIN=target/release/gatehouse .venv/bin/python benches/e2e.py [--quick]

Measures, against one `gatehouse demo` and its sshd:
  - exec latency over one paramiko connection (p50/p90), default client and TCP_NODELAY client;
  - connect + first exec (new paramiko connection each time);
  - 100 MB of output throughput, paramiko and the OpenSSH client;
  - RSS of gatehouse with 1,000 idle authenticated agent connections.
Prints a Markdown table (the README's) and exits 0; it asserts nothing, it reports.
"""

import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
from conftest import Demo, run  # noqa: E402

QUICK = "--quick" in sys.argv
EXECS = 100 if QUICK else 400
CONNECTS = 10 if QUICK else 40
BULK_MB = 100
IDLE = 200 if QUICK else 1000


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def exec_latency(connect):
    client = connect()
    run(client, "true")  # warm up: upstream pool, caches
    samples = []
    for _ in range(EXECS):
        t = time.perf_counter()
        run(client, "true")
        samples.append((time.perf_counter() - t) * 1000)
    client.close()
    return statistics.median(samples), pct(samples, 0.9)


def connect_first_exec(connect):
    samples = []
    for _ in range(CONNECTS):
        t = time.perf_counter()
        client = connect()
        run(client, "true")
        samples.append((time.perf_counter() - t) * 1000)
        client.close()
    return statistics.median(samples)


def paramiko_throughput(connect):
    client = connect()
    chan = client.get_transport().open_session()
    t = time.perf_counter()
    chan.exec_command(f"head -c {BULK_MB * 1000 * 1000} /dev/zero")
    n = 0
    while True:
        data = chan.recv(1 << 20)
        if not data:
            break
        n += len(data)
    chan.recv_exit_status()
    dt = time.perf_counter() - t
    client.close()
    assert n == BULK_MB * 1000 * 1000, n
    return n / dt / 1e6


def openssh_throughput(demo, host):
    t = time.perf_counter()
    out = subprocess.run(
        ["ssh", "-F", str(demo.dir / "ssh_config"), "-o", "BatchMode=yes", host,
         f"head -c {BULK_MB * 1000 * 1000} /dev/zero"],
        stdout=subprocess.PIPE, check=True,
    ).stdout
    dt = time.perf_counter() - t
    assert len(out) == BULK_MB * 1000 * 1000
    return len(out) / dt / 1e6


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def idle_connections(demo):
    before = rss_kib(demo.proc.pid)
    clients = []
    lock = threading.Lock()

    def open_some(n):
        mine = []
        for _ in range(n):
            mine.append(demo.connect())
        with lock:
            clients.extend(mine)

    threads = [threading.Thread(target=open_some, args=(IDLE // 20,)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(1)
    during = rss_kib(demo.proc.pid)
    for c in clients:
        c.close()
    return len(clients), before, during


def main():
    demo = Demo()
    try:
        rows = []
        via, direct = exec_latency(demo.connect), exec_latency(demo.connect_direct)
        rows.append(("exec p50 / p90, paramiko default (ms)", f"{via[0]:.2f} / {via[1]:.2f}",
                     f"{direct[0]:.2f} / {direct[1]:.2f}", f"{via[0] / direct[0]:.2f}x"))
        via = exec_latency(lambda: demo.connect(nodelay=True))
        direct = exec_latency(lambda: demo.connect_direct(nodelay=True))
        rows.append(("exec p50 / p90, paramiko TCP_NODELAY (ms)", f"{via[0]:.2f} / {via[1]:.2f}",
                     f"{direct[0]:.2f} / {direct[1]:.2f}",
                     f"{via[0] / direct[0]:.2f}x (+{via[0] - direct[0]:.2f} ms)"))
        via, direct = connect_first_exec(demo.connect), connect_first_exec(demo.connect_direct)
        rows.append(("connect + first exec p50 (ms)", f"{via:.1f}", f"{direct:.1f}",
                     f"{via / direct:.2f}x"))
        via, direct = paramiko_throughput(demo.connect), paramiko_throughput(demo.connect_direct)
        rows.append((f"{BULK_MB} MB output, paramiko (MB/s)", f"{via:.0f}", f"{direct:.0f}",
                     f"{via / direct:.2f}x"))
        via, direct = openssh_throughput(demo, "demo"), openssh_throughput(demo, "demo-direct")
        rows.append((f"{BULK_MB} MB output, OpenSSH ssh (MB/s)", f"{via:.0f}", f"{direct:.0f}",
                     f"{via / direct:.2f}x"))
        n, before, during = idle_connections(demo)
        rows.append((f"RSS with {n} idle agent connections (MiB)", f"{during / 1024:.0f}",
                     "-", f"(idle before: {before / 1024:.0f} MiB)"))
        print("| measure | through gatehouse | direct | ratio |")
        print("|---|---|---|---|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    finally:
        demo.stop()


if __name__ == "__main__":
    main()
