"""End-to-end bench harness: gatehouse against the same sshd directly, side by side in one run.

Usage (after `cargo build --release`):
    GATEHOUSE_DEMO_TARGET_USER=gatehouse-test GATEHOUSE_BIN=target/release/gatehouse \\
        .venv/bin/python benches/e2e.py [--quick]

Starts four `gatehouse demo` processes side by side: `main` as shipped (masking and recording
on), `no-recording` (`--no-recording`), `no-masking` (`--no-masking`) and `bare` (both off). Every comparison
interleaves its two sides sample by sample or run by run, so a machine that gets busier during
the run slows both alike. It measures:
  - exec latency over one paramiko connection (p50/p90), default client and TCP_NODELAY client,
    through gatehouse and straight to main's sshd, and with TCP_NODELAY through `bare`; each
    sample ends when the exec's EOF and exit status are in (blocking reads, no polling);
  - connect + first exec (a new paramiko connection each time);
  - 100 MB of output, paramiko and the OpenSSH client, for two payloads: zeros
    (`head -c N /dev/zero`, the recorder's worst case: every NUL is six bytes of JSON) and
    log-like text (`head -c N FILE`); and log text through `bare`, the data path alone;
  - recording on vs off and masking on vs off on 100 MB through gatehouse (OpenSSH client),
    with the CPU time gatehouse spent per transfer on each side (less sensitive to other load
    than throughput);
  - for the paramiko transfers, where the machine's CPU went: paramiko, gatehouse, everything
    else (sshd, kernel writeback) and idle, in seconds per transfer;
  - RSS of gatehouse with 1,000 idle authenticated agent connections (asyncssh);
  - paramiko announcing itself as 3.4.1 through `main`: gatehouse then offers it AES-CTR, which
    it takes (what every paramiko got before gatehouse offered 3.5 and later only AES-GCM).
    paramiko straight to sshd always takes AES-CTR with HMAC-SHA2-256: sshd offers it.
Prints Markdown tables (the README's) and exits 0; it asserts nothing, it reports.
"""

import asyncio
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
import paramiko  # noqa: E402
from conftest import BIN, Demo, run  # noqa: E402

QUICK = "--quick" in sys.argv
EXECS = 100 if QUICK else 300
CONNECTS = 10 if QUICK else 30
REPS = 1 if QUICK else 5
BULK = 100 * 1000 * 1000
IDLE = 200 if QUICK else 1000


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def log_text_file():
    """About 100 MB of log-like lines (no secrets) in a file the target account can read."""
    d = Path(tempfile.mkdtemp(prefix="gatehouse-bench-"))
    os.chmod(d, 0o755)
    rng = random.Random(7)
    levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
    services = ["api", "worker", "db", "cache", "auth", "billing"]
    lines = []
    for i in range(100_000):
        lines.append(
            f"2026-11-21T12:{i // 3600 % 60:02d}:{i // 60 % 60:02d}.{i % 1000:03d}Z "
            f"{rng.choice(levels)} [{rng.choice(services)}] request id={rng.getrandbits(32):08x} "
            f"user=u{rng.randint(1, 999)} path=/v1/items/{rng.randint(1, 99999)} "
            f"status={rng.choice([200, 200, 200, 404, 500])} took={rng.randint(1, 900)}ms\n"
        )
    blob = "".join(lines).encode()
    path = d / "app.log"
    with open(path, "wb") as f:
        written = 0
        while written < BULK:
            f.write(blob)
            written += len(blob)
    os.chmod(path, 0o644)
    return path


def exec_true(client):
    """One `true` exec, timed to the moment its EOF and exit status are in: blocking reads wake
    on paramiko's own events. (The tests' `run` polls every millisecond, which would round
    every sample up to the next poll and hide differences under a millisecond.)"""
    chan = client.get_transport().open_session()
    chan.exec_command("true")
    chan.shutdown_write()
    while chan.recv(1 << 16):
        pass
    status = chan.recv_exit_status()
    chan.close()
    assert status == 0, status


def exec_latency(via_connect, direct_connect):
    """Exec round trips on one connection each, in alternating blocks of back-to-back execs
    (alternating every exec would leave each connection idle while the other runs, which hides
    the delayed-ACK stalls a Nagle client meets when its execs follow each other)."""
    via, direct = via_connect(), direct_connect()
    run(via, "true")  # warm up: upstream pool, caches
    run(direct, "true")
    samples = ([], [])
    block = 25
    for _ in range(EXECS // block):
        for client, out in ((via, samples[0]), (direct, samples[1])):
            for _ in range(block):
                t = time.perf_counter()
                exec_true(client)
                out.append((time.perf_counter() - t) * 1000)
    via.close()
    direct.close()
    return [(statistics.median(s), pct(s, 0.9)) for s in samples]


def connect_first_exec(via_connect, direct_connect):
    samples = ([], [])
    for _ in range(CONNECTS):
        for connect, out in ((via_connect, samples[0]), (direct_connect, samples[1])):
            t = time.perf_counter()
            client = connect()
            exec_true(client)
            out.append((time.perf_counter() - t) * 1000)
            client.close()
    return [statistics.median(s) for s in samples]


def machine_cpu():
    """Busy and idle CPU seconds of the whole machine so far, every core summed (/proc/stat;
    iowait counts as idle, steal as busy: another guest had the core)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = ticks
    hz = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / hz, (idle + iowait) / hz


def paramiko_throughput_cpu(connect, command, pid):
    """MB/s, and where the machine's CPU went during the transfer, in seconds: this process
    (paramiko, the client), gatehouse (`pid`), everything else (sshd, kernel threads such as
    writeback), and idle. The connection is set up before the clocks start."""
    client = connect()
    chan = client.get_transport().open_session()
    me, gate, (busy, idle) = os.times(), cpu_seconds(pid), machine_cpu()
    t = time.perf_counter()
    chan.exec_command(command)
    n = 0
    while True:
        data = chan.recv(1 << 20)
        if not data:
            break
        n += len(data)
    chan.recv_exit_status()
    dt = time.perf_counter() - t
    me_after, gate_after, (busy_after, idle_after) = os.times(), cpu_seconds(pid), machine_cpu()
    client.close()
    assert n == BULK, n
    mine = (me_after.user + me_after.system) - (me.user + me.system)
    theirs = gate_after - gate
    return (n / dt / 1e6, dt, mine, theirs, busy_after - busy - mine - theirs, idle_after - idle)


def clear_recordings(demos):
    """Waits until every recording is sealed, then deletes them (a bulk run leaves 600 MB per
    100 MB of zeros). A seal fsyncs its recording just after the transfer ends; waiting for it
    keeps that writeback out of the next run, which it would otherwise slow (deleting the
    `.cast` name alone frees nothing while the `.open` name holds the file)."""
    deadline = time.monotonic() + 120
    for d in demos:
        while any((d.dir / "recordings").glob("*/*.open")) and time.monotonic() < deadline:
            time.sleep(0.05)
        for day in (d.dir / "recordings").glob("*"):
            for f in day.glob("*.cast"):
                f.unlink(missing_ok=True)


def openssh_throughput(demo, host, command):
    t = time.perf_counter()
    proc = subprocess.Popen(
        ["ssh", "-F", str(demo.dir / "ssh_config"), "-o", "BatchMode=yes", host, command],
        stdout=subprocess.PIPE,
    )
    n = 0
    while True:
        data = proc.stdout.read1(1 << 20)
        if not data:
            break
        n += len(data)
    assert proc.wait() == 0
    dt = time.perf_counter() - t
    assert n == BULK, n
    return n / dt / 1e6


def cpu_seconds(pid):
    """User + system CPU time of a process so far (gatehouse's own threads, blocking pool included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def openssh_throughput_cpu(demo, command):
    """MB/s through `demo`, and the CPU seconds gatehouse spent on the transfer."""
    before = cpu_seconds(demo.proc.pid)
    rate = openssh_throughput(demo, "demo", command)
    return rate, cpu_seconds(demo.proc.pid) - before


def cost(on, off):
    """Throughput lost by switching a feature on (negative: on measured faster, i.e. noise)."""
    return f"{(1 - on / off) * 100:.0f}%"


ALL_DEMOS = []


def side_by_side(a, b):
    """Runs a() and b() alternately REPS times; the median of each (per element when they
    return tuples)."""
    ra, rb = [], []
    for _ in range(REPS):
        ra.append(a())
        clear_recordings(ALL_DEMOS)
        rb.append(b())
        clear_recordings(ALL_DEMOS)

    def med(runs):
        if isinstance(runs[0], tuple):
            return tuple(statistics.median(column) for column in zip(*runs))
        return statistics.median(runs)

    return med(ra), med(rb)


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def open_idle(demo, n):
    import asyncssh

    key = asyncssh.read_private_key(str(demo.dir / "keys" / "agent"))
    cert = asyncssh.read_certificate(str(demo.dir / "keys" / "agent-cert.pub"))
    host_key = None
    for line in (demo.dir / "known_hosts").read_text().splitlines():
        alias, kind, blob = line.split()[:3]
        if alias == "gatehouse":
            host_key = asyncssh.import_public_key(f"{kind} {blob}")
    gate = asyncio.Semaphore(50)

    async def one():
        async with gate:
            return await asyncssh.connect(
                "127.0.0.1",
                demo.port,
                username="demo",
                client_keys=[(key, cert)],
                known_hosts=([host_key], [], []),
                agent_path=None,
                config=None,
                preferred_auth="publickey",
            )

    return await asyncio.gather(*(one() for _ in range(n)))


def idle_connections(demo):
    async def go():
        before = rss_kib(demo.proc.pid)
        conns = await open_idle(demo, IDLE)
        await asyncio.sleep(2)
        during = rss_kib(demo.proc.pid)
        for c in conns:
            c.close()
        await asyncio.gather(*(c.wait_closed() for c in conns))
        return len(conns), before, during

    return asyncio.run(go())


def as_paramiko_3_4(connect):
    """`connect` with paramiko announcing itself as 3.4.1, the last release without AES-GCM."""
    def connected():
        saved = paramiko.Transport._CLIENT_ID
        paramiko.Transport._CLIENT_ID = "paramiko_3.4.1"
        try:
            return connect()
        finally:
            paramiko.Transport._CLIENT_ID = saved
    return connected


def cipher(connect):
    """The cipher paramiko negotiates over `connect`."""
    client = connect()
    name = client.get_transport().remote_cipher
    client.close()
    return name


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # 1,000 connections need more descriptors than the usual 1,024 (inherited by the demos).
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    load_before = os.getloadavg()
    text = log_text_file()
    demos = {
        "main": Demo(),
        "no-recording": Demo(("--no-recording",)),
        "no-masking": Demo(("--no-masking",)),
        "bare": Demo(("--no-recording", "--no-masking")),
    }
    ALL_DEMOS.extend(demos.values())
    main_demo = demos["main"]
    rows, onoff, cpu_rows = [], [], []
    try:
        n, before, during = idle_connections(main_demo)
        idle_row = (
            f"RSS with {n:,} idle agent connections (MiB)",
            f"{during / 1024:.0f}",
            f"(idle before: {before / 1024:.0f})",
            "",
            "≤ 256",
        )

        (via, direct) = exec_latency(main_demo.connect, main_demo.connect_direct)
        rows.append(("exec p50 / p90, paramiko default (ms)", f"{via[0]:.2f} / {via[1]:.2f}",
                     f"{direct[0]:.2f} / {direct[1]:.2f}", f"{via[0] / direct[0]:.2f}×",
                     "≤ 1.05×"))
        (via, direct) = exec_latency(lambda: main_demo.connect(nodelay=True),
                                     lambda: main_demo.connect_direct(nodelay=True))
        rows.append(("exec p50 / p90, paramiko TCP_NODELAY (ms)", f"{via[0]:.2f} / {via[1]:.2f}",
                     f"{direct[0]:.2f} / {direct[1]:.2f}",
                     f"{via[0] / direct[0]:.2f}× (+{via[0] - direct[0]:.2f} ms)",
                     "≤ 1.25×, ≤ +0.5 ms"))
        bare = demos["bare"]
        (via, direct) = exec_latency(lambda: bare.connect(nodelay=True),
                                     lambda: bare.connect_direct(nodelay=True))
        rows.append(("exec p50 / p90, paramiko TCP_NODELAY, masking and recording off (ms)",
                     f"{via[0]:.2f} / {via[1]:.2f}", f"{direct[0]:.2f} / {direct[1]:.2f}",
                     f"{via[0] / direct[0]:.2f}× (+{via[0] - direct[0]:.2f} ms)", ""))
        via, direct = connect_first_exec(main_demo.connect, main_demo.connect_direct)
        rows.append(("connect + first exec p50 (ms)", f"{via:.1f}", f"{direct:.1f}",
                     f"{via / direct:.2f}×", "≤ 1.0×"))

        payloads = (("zeros", f"head -c {BULK} /dev/zero"), ("log text", f"head -c {BULK} {text}"))
        old_paramiko = as_paramiko_3_4(main_demo.connect)
        ciphers = (f"{cipher(main_demo.connect)} / {cipher(main_demo.connect_direct)}",
                   f"{cipher(old_paramiko)} / {cipher(main_demo.connect_direct)}")
        pid = main_demo.proc.pid
        for name, command in payloads:
            via, direct = side_by_side(
                lambda: paramiko_throughput_cpu(main_demo.connect, command, pid),
                lambda: paramiko_throughput_cpu(main_demo.connect_direct, command, pid),
            )
            rows.append((f"100 MB {name}, paramiko {paramiko.__version__}, {ciphers[0]} (MB/s)",
                         f"{via[0]:.0f}", f"{direct[0]:.0f}", f"{via[0] / direct[0]:.2f}×",
                         "≥ 0.90×"))
            cpu_rows.append((f"{name}, through gatehouse", *via))
            cpu_rows.append((f"{name}, direct", *direct))
            via, direct = side_by_side(
                lambda: openssh_throughput(main_demo, "demo", command),
                lambda: openssh_throughput(main_demo, "demo-direct", command),
            )
            rows.append((f"100 MB {name}, OpenSSH ssh (MB/s)", f"{via:.0f}", f"{direct:.0f}",
                         f"{via / direct:.2f}×", "≥ 0.80×"))
        command = payloads[1][1]
        via, direct = side_by_side(
            lambda: paramiko_throughput_cpu(bare.connect, command, bare.proc.pid),
            lambda: paramiko_throughput_cpu(bare.connect_direct, command, bare.proc.pid),
        )
        rows.append(("100 MB log text, paramiko, masking and recording off (MB/s)",
                     f"{via[0]:.0f}", f"{direct[0]:.0f}", f"{via[0] / direct[0]:.2f}×", ""))
        cpu_rows.append(("log text, masking and recording off", *via))
        via, direct = side_by_side(
            lambda: openssh_throughput(bare, "demo", command),
            lambda: openssh_throughput(bare, "demo-direct", command),
        )
        rows.append(("100 MB log text, OpenSSH, masking and recording off (MB/s)", f"{via:.0f}",
                     f"{direct:.0f}", f"{via / direct:.2f}×", ""))
        for name, command in payloads:
            via, direct = side_by_side(
                lambda: paramiko_throughput_cpu(old_paramiko, command, pid)[0],
                lambda: paramiko_throughput_cpu(main_demo.connect_direct, command, pid)[0],
            )
            rows.append((f"100 MB {name}, paramiko announcing 3.4.1, {ciphers[1]} (MB/s)",
                         f"{via:.0f}", f"{direct:.0f}", f"{via / direct:.2f}×", ""))
        rows.append(idle_row)

        for name, command in payloads:
            on, off = side_by_side(
                lambda: openssh_throughput_cpu(main_demo, command),
                lambda: openssh_throughput_cpu(demos["no-recording"], command),
            )
            onoff.append((f"recording, 100 MB {name} (MB/s)", f"{on[0]:.0f}", f"{off[0]:.0f}",
                          cost(on[0], off[0]), f"{on[1]:.2f} / {off[1]:.2f}", "≤ 5%"))
        on, off = side_by_side(
            lambda: openssh_throughput_cpu(main_demo, payloads[1][1]),
            lambda: openssh_throughput_cpu(demos["no-masking"], payloads[1][1]),
        )
        onoff.append(("masking, 100 MB log text (MB/s)", f"{on[0]:.0f}", f"{off[0]:.0f}",
                      cost(on[0], off[0]), f"{on[1]:.2f} / {off[1]:.2f}", "≤ 10%"))
    finally:
        for d in demos.values():
            d.stop()
        text.unlink(missing_ok=True)
        text.parent.rmdir()

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    print(f"machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}; "
          f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after; "
          f"binary {BIN}; {'--quick' if QUICK else 'full run'}")
    print()
    print("| measure | through gatehouse | direct | ratio | goal |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print("| through gatehouse, OpenSSH client | on | off | throughput cost "
          "| gatehouse CPU s, on / off | goal |")
    print("|---|---|---|---|---|---|")
    for r in onoff:
        print("| " + " | ".join(r) + " |")
    print()
    print("| 100 MB, paramiko | MB/s | transfer s | paramiko CPU s | gatehouse CPU s "
          "| other CPU s | idle CPU s |")
    print("|---|---|---|---|---|---|---|")
    for name, rate, *seconds in cpu_rows:
        print(f"| {name} | {rate:.0f} | " + " | ".join(f"{x:.2f}" for x in seconds) + " |")


if __name__ == "__main__":
    main()
