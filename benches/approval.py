"""Approval bench: how long after a reviewer's approval does the held command start?

Usage (after `cargo build --release`):
    GATEHOUSE_BIN=target/release/gatehouse .venv/bin/python benches/approval.py [N]

Against one `gatehouse demo` (real sshd as target), with one paramiko connection for the agent
and one for the reviewer (`console` login, reviewer certificate), N times (default 40):
  1. the agent execs a held command that prints at once (`eval 'echo 4242'`, held by rule
     eval) and reads the request id from its `gatehouse: held ...` stderr line;
  2. the reviewer execs `approve ID` on the console login;
  3. a thread blocked in the agent channel's recv() notes when the first output byte arrives.
Reports p50/p90 of: approval reply (exit status) received by the reviewer -> agent's first
output byte (the goal: <= 50 ms p50), and the reviewer opening the `approve` channel -> first
byte. For scale, the same for an allowed
`echo 4242` (exec sent -> first byte) on the same connection. Asserts nothing; it reports.
"""

import re
import statistics
import sys
import threading
import time
from pathlib import Path

import paramiko

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
from conftest import Demo  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 40
HELD = "eval 'echo 4242'"
HELD_LINE = re.compile(rb"gatehouse: held by rule \S+ \(([a-z0-9]+)\)")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def reviewer_key(demo):
    key = paramiko.Ed25519Key.from_private_key_file(str(demo.dir / "keys" / "reviewer"))
    key.load_certificate(str(demo.dir / "keys" / "reviewer-cert.pub"))
    return key


class FirstByte(threading.Thread):
    """Blocks in recv() on a channel and notes when the first stdout byte arrives."""

    def __init__(self, chan):
        super().__init__(daemon=True)
        self.chan = chan
        self.at = None
        self.data = b""

    def run(self):
        data = self.chan.recv(1)
        self.at = time.perf_counter()
        self.data = data
        while data:
            data = self.chan.recv(65536)
            self.data += data


def held_id(chan, timeout=30):
    err = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if chan.recv_stderr_ready():
            err += chan.recv_stderr(4096)
            m = HELD_LINE.search(err)
            if m:
                return m.group(1).decode()
        else:
            time.sleep(0.001)
    raise RuntimeError(f"no held line: {err!r}")


def one_approval(agent, reviewer):
    chan = agent.get_transport().open_session()
    chan.exec_command(HELD)
    request = held_id(chan)
    reader = FirstByte(chan)
    reader.start()
    sent = time.perf_counter()
    approve = reviewer.get_transport().open_session()
    approve.exec_command(f"approve {request}")
    # Blocks on paramiko's event (no polling): the decision is committed once this returns.
    status = approve.recv_exit_status()
    replied = time.perf_counter()
    if status != 0:
        raise RuntimeError(f"approve failed: {approve.recv_stderr(4096)!r}")
    approve.close()
    reader.join(30)
    chan.recv_exit_status()
    chan.close()
    if reader.at is None or not reader.data.startswith(b"4242"):
        raise RuntimeError(f"agent output: {reader.data!r}")
    return (reader.at - replied) * 1000, (reader.at - sent) * 1000


def one_allowed(agent):
    chan = agent.get_transport().open_session()
    reader = FirstByte(chan)
    sent = time.perf_counter()
    chan.exec_command("echo 4242")
    reader.start()
    reader.join(30)
    chan.recv_exit_status()
    chan.close()
    return (reader.at - sent) * 1000


def main():
    demo = Demo()
    try:
        agent = demo.connect()
        reviewer = demo.connect(target="console", key=reviewer_key(demo))
        for s in (agent, reviewer):
            s.get_transport().sock.setsockopt(6, 1, 1)  # TCP_NODELAY, as OpenSSH does
        one_approval(agent, reviewer)  # warm up: upstream pool, caches
        from_reply, from_sent = [], []
        for _ in range(N):
            a, b = one_approval(agent, reviewer)
            from_reply.append(a)
            from_sent.append(b)
        allowed = [one_allowed(agent) for _ in range(N)]
        print(f"N = {N}, held command {HELD!r}")
        print("| measure | p50 (ms) | p90 (ms) |")
        print("|---|---|---|")
        for name, v in (
            ("approve reply -> agent's first output byte", from_reply),
            ("reviewer opens `approve` -> agent's first output byte", from_sent),
            ("allowed `echo 4242`: exec sent -> first byte", allowed),
        ):
            print(f"| {name} | {statistics.median(v):.1f} | {pct(v, 0.9):.1f} |")
        agent.close()
        reviewer.close()
    finally:
        demo.stop()


if __name__ == "__main__":
    main()
