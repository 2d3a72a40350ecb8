"""Fixtures: a running `gatehouse demo` (real OpenSSH sshd as its target) for paramiko agents."""

import base64
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import paramiko
import pytest

BIN = os.environ.get("GATEHOUSE_BIN") or str(
    Path(__file__).resolve().parents[2] / "target" / "debug" / "gatehouse"
)


class Demo:
    """A `gatehouse demo` process and the files it wrote; `args` are further demo flags
    (`--policy FILE`, `--webhook URL`, `--no-recording`, `--no-masking`)."""

    def __init__(self, args=()):
        self.dir = Path(tempfile.mkdtemp(prefix="gatehouse-py-"))
        if os.environ.get("GATEHOUSE_DEMO_TARGET_USER"):
            # Commands on the target run as that unprivileged user and write markers here.
            os.chmod(self.dir, 0o777)
        self.log_path = self.dir.with_suffix(".log")
        self.proc = subprocess.Popen(
            [BIN, "demo", "--dir", str(self.dir), *args],
            stdout=subprocess.PIPE,
            stderr=open(self.log_path, "wb"),
            stdin=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": "info"},
        )
        banner = b""
        deadline = time.time() + 60
        while b"gatehouse demo ready" not in banner:
            if time.time() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("demo did not start: " + self.log())
            ready, _, _ = select.select([self.proc.stdout], [], [], 1)
            if ready:
                banner += os.read(self.proc.stdout.fileno(), 4096)
        self.banner = banner.decode()
        cfg = (self.dir / "ssh_config").read_text()
        self.port = int(re.search(r"Host demo\n(?:  .*\n)*?  Port (\d+)", cfg).group(1))
        self.direct_port = int(
            re.search(r"Host demo-direct\n(?:  .*\n)*?  Port (\d+)", cfg).group(1)
        )
        self.direct_user = re.search(r"Host demo-direct\n  User (\S+)", cfg).group(1)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_containing(self, *needles, timeout=15):
        """The log once it holds every needle: gatehouse writes its log lines from a thread
        of its own, so a line about an event may land a moment after the client saw it."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log()
            missing = [n for n in needles if n not in log]
            if not missing:
                return log
            assert time.monotonic() < deadline, f"no {missing} in the log:\n{log[-4000:]}"
            time.sleep(0.02)

    def agent_key(self):
        key = paramiko.Ed25519Key.from_private_key_file(str(self.dir / "keys" / "agent"))
        key.load_certificate(str(self.dir / "keys" / "agent-cert.pub"))
        return key

    def host_keys(self, client):
        """Trust exactly the keys the demo wrote to DIR/known_hosts."""
        for line in (self.dir / "known_hosts").read_text().splitlines():
            alias, kind, blob = line.split()[:3]
            key = paramiko.PKey.from_type_string(kind, base64.b64decode(blob))
            port = self.port if alias == "gatehouse" else self.direct_port
            client.get_host_keys().add(f"[127.0.0.1]:{port}", kind, key)

    def connect(self, target="demo", key=None, nodelay=False):
        """A paramiko client logged in to `target` through gatehouse."""
        client = paramiko.SSHClient()
        self.host_keys(client)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            "127.0.0.1",
            port=self.port,
            username=target,
            pkey=key or self.agent_key(),
            allow_agent=False,
            look_for_keys=False,
            timeout=20,
            banner_timeout=20,
            auth_timeout=20,
        )
        if nodelay:
            client.get_transport().sock.setsockopt(6, 1, 1)
        return client

    def connect_direct(self, nodelay=False):
        """A paramiko client straight to the demo sshd with the target's own key."""
        client = paramiko.SSHClient()
        self.host_keys(client)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            "127.0.0.1",
            port=self.direct_port,
            username=self.direct_user,
            pkey=paramiko.Ed25519Key.from_private_key_file(str(self.dir / "keys" / "target_key")),
            allow_agent=False,
            look_for_keys=False,
            timeout=20,
        )
        if nodelay:
            client.get_transport().sock.setsockopt(6, 1, 1)
        return client

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        try:
            self.log_path.unlink()
        except OSError:
            pass


@pytest.fixture(scope="module")
def demo():
    d = Demo()
    yield d
    d.stop()


def run(client, command, stdin=b"", timeout=60, env=None):
    """Runs one exec; returns (stdout, stderr, exit status). `env` is sent as SSH env requests
    (`{"GATEHOUSE_APPROVAL": "return"}` asks for return mode)."""
    return finish(start_exec(client, command, stdin, timeout, env), timeout)


def start_exec(client, command, stdin=b"", timeout=60, env=None):
    """Opens a channel, sends `env`, the exec request and `stdin`, then EOF; returns the channel."""
    chan = client.get_transport().open_session(timeout=timeout)
    chan.settimeout(timeout)
    if env:
        chan.update_environment(env)
    chan.exec_command(command)
    if stdin:
        chan.sendall(stdin)
    chan.shutdown_write()
    return chan


def finish(chan, timeout=60):
    """Reads a channel to EOF; returns (stdout, stderr, exit status), -1 when the channel closed
    without one.

    Output is complete at EOF, not at exit-status: SSH does not order exit-status after the
    data (gatehouse holds it until EOF, OpenSSH's sshd does not), so this reads to EOF, as
    OpenSSH's client does."""
    out, err = b"", b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if chan.recv_ready():
            out += chan.recv(65536)
        elif chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        elif (chan.eof_received or chan.closed) and not chan.recv_ready() and not chan.recv_stderr_ready():
            break
        else:
            time.sleep(0.001)
    else:
        chan.close()
        raise TimeoutError(f"no EOF within {timeout} s")
    status = chan.recv_exit_status()
    chan.close()
    return out, err, status


def wait_for_port(port, proc, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"{what} exited with {proc.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} is not listening on {port}")


class Restarted:
    """gatehouse started again with `gatehouse serve --config DIR/gatehouse.toml` (the same data
    directory, CA, vault and ports), in front of the demo's sshd started again from
    DIR/sshd/sshd_config."""

    def __init__(self, demo):
        self.demo = demo
        sshd_config = demo.dir / "sshd" / "sshd_config"
        self.sshd = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(sshd_config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(demo.log_path, "ab"),
        )
        self.gatehouse = subprocess.Popen(
            [BIN, "--config", str(demo.dir / "gatehouse.toml"), "serve"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(demo.log_path, "ab"),
        )
        try:
            wait_for_port(demo.direct_port, self.sshd, "sshd")
            wait_for_port(demo.port, self.gatehouse, "gatehouse serve")
        except BaseException:
            self.stop()
            raise

    def stop(self):
        for proc in (self.gatehouse, self.sshd):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def stop_orphaned_sshd(root):
    """A killed demo cannot stop its sshd; its pid file names it."""
    pid_file = Path(root) / "sshd" / "sshd.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        except (OSError, ValueError):
            pass
