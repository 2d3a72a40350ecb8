"""Recordings survive the ways gatehouse stops, checked with real programs end to end.

- SIGTERM while execs are open (one running on the target, one held for a reviewer): gatehouse
  stops accepting, each exec writes its session-end marker and is sealed into the audit log,
  the process exits 0, `gatehouse audit verify` passes and stock `asciinema cat` reads them.
- `kill -9` while an exec streams output: the next `gatehouse serve` on the same directories cuts
  the file at its last complete line, marks it `truncated: gatehouse restarted` and seals it as
  recovered; verify and asciinema agree.
"""

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import BIN, Demo, stop_orphaned_sshd

GRACE_EXPIRED = "still open after the grace period"


def ssh(demo, command):
    """OpenSSH `ssh` to the demo target through gatehouse, left running."""
    return subprocess.Popen(
        ["ssh", "-F", str(demo.dir / "ssh_config"), "-o", "BatchMode=yes", "demo", command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for(stream, needle, timeout=60):
    """Reads `stream` until `needle` has appeared; returns what was read."""
    seen = b""
    deadline = time.time() + timeout
    while needle not in seen:
        assert time.time() < deadline, f"never saw {needle!r}; got {seen!r}"
        ready, _, _ = select.select([stream], [], [], 1)
        if ready:
            chunk = os.read(stream.fileno(), 4096)
            assert chunk, f"stream ended before {needle!r}; got {seen!r}"
            seen += chunk
    return seen


def casts(root):
    return sorted(Path(root).glob("recordings/*/*.cast"))


def audit_records(root):
    path = Path(root) / "data" / "audit" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def sealed(root):
    """recording.sealed records by recording path (relative to the recordings root)."""
    return {r["path"]: r for r in audit_records(root) if r["kind"] == "recording.sealed"}


def relative(root, cast):
    return str(cast.relative_to(Path(root) / "recordings"))


def verify(root):
    return subprocess.run(
        [BIN, "--config", str(Path(root) / "gatehouse.toml"), "audit", "verify"],
        capture_output=True,
        text=True,
    )


def asciinema_cat(cast):
    return subprocess.run(
        [sys.executable, "-m", "asciinema", "cat", str(cast)],
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=True,
    ).stdout


def events(cast):
    lines = cast.read_text().splitlines()
    json.loads(lines[0])  # the header
    return [json.loads(line) for line in lines[1:]]


def test_sigterm_seals_open_recordings_and_exits_zero():
    demo = Demo()
    try:
        running = ssh(demo, "echo started; sleep 30")
        held = ssh(demo, "systemctl restart nginx")
        wait_for(running.stdout, b"started\n")
        told = {id(held): wait_for(held.stderr, b"waiting for approval"), id(running): b""}
        assert len(casts(demo.dir)) == 2 and not sealed(demo.dir)

        demo.proc.send_signal(signal.SIGTERM)
        assert demo.proc.wait(timeout=60) == 0, demo.log()
        log = demo.log()
        assert GRACE_EXPIRED not in log, log

        # Each agent was told why its command ended; neither got an exit status.
        for client in (running, held):
            _, err = client.communicate(timeout=30)
            err = told[id(client)] + err
            assert b"gatehouse: shutting down; the command was cut off" in err, err
            assert client.returncode == 255

        seals = sealed(demo.dir)
        assert not list(demo.dir.glob("recordings/*/*.open"))
        for cast in casts(demo.dir):
            seal = seals[relative(demo.dir, cast)]
            assert seal["exit_status"] is None and "recovered" not in seal
            assert seal["size"] == cast.stat().st_size
            marks = [e[2] for e in events(cast) if e[1] == "m"]
            assert marks[-1] == "session end: gatehouse shutting down", marks
        result = verify(demo.dir)
        assert result.returncode == 0, result.stderr
        assert "2 sealed recordings" in result.stdout, result.stdout

        played = b"".join(asciinema_cat(c) for c in casts(demo.dir))
        assert b"started\n" in played
        assert played.count(b"gatehouse: shutting down; the command was cut off") == 2
    finally:
        demo.stop()


def test_kill_9_mid_session_then_restart_repairs_and_seals():
    demo = Demo()
    serve = None
    try:
        streaming = ssh(demo, "while true; do echo tick; sleep 0.05; done")
        wait_for(streaming.stdout, b"tick\ntick\n")
        [cast] = casts(demo.dir)
        # Output reaches the file at least once a second: wait until some has.
        deadline = time.time() + 60
        while b'"o", "tick' not in cast.read_bytes():
            assert time.time() < deadline, cast.read_text()
            time.sleep(0.1)

        demo.proc.kill()
        demo.proc.wait(timeout=30)
        stop_orphaned_sshd(demo.dir)
        streaming.kill()
        streaming.wait()
        assert Path(str(cast) + ".open").exists(), "the unsealed marker outlives the crash"

        # What a power cut mid-write leaves: a torn last line (a kill alone writes whole lines).
        torn = b'[9.999999, "o", "half a li'
        with open(cast, "ab") as f:
            f.write(torn)
        before = cast.read_bytes()
        complete = before[: before.rindex(b"\n") + 1]
        last_time = json.loads(complete.splitlines()[-1])[0]

        log_path = demo.dir.with_suffix(".serve.log")
        with open(log_path, "wb") as log:
            serve = subprocess.Popen(
                [BIN, "--config", str(demo.dir / "gatehouse.toml"), "serve"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={**os.environ, "RUST_LOG": "info"},
            )
        deadline = time.time() + 60
        while b"gatehouse listening" not in log_path.read_bytes():
            assert serve.poll() is None, log_path.read_text()
            assert time.time() < deadline, log_path.read_text()
            time.sleep(0.1)

        after = cast.read_bytes()
        assert after.startswith(complete)
        assert torn not in after
        tail = after[len(complete):]
        assert tail.count(b"\n") == 1 and tail.endswith(b"\n")
        assert json.loads(tail) == [last_time, "m", "truncated: gatehouse restarted"]
        assert not Path(str(cast) + ".open").exists()
        seal = sealed(demo.dir)[relative(demo.dir, cast)]
        assert seal["recovered"] is True
        assert seal["truncated_bytes"] == len(before) - len(complete)
        assert seal["size"] == len(after)

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0, log_path.read_text()
        log_path.unlink()

        result = verify(demo.dir)
        assert result.returncode == 0, result.stderr
        played = asciinema_cat(cast)
        assert played.startswith(b"tick\n") and b"half a li" not in played
    finally:
        if serve is not None and serve.poll() is None:
            serve.kill()
        stop_orphaned_sshd(demo.dir)
        demo.stop()
