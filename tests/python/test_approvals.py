"""Held commands end to end with real programs: paramiko agents wait for a decision (or get 75 in
return mode), reviewers decide with the OpenSSH client (`ssh console approve|deny ID`), fifty
requests are approved in bulk, gatehouse restarts on the same data directory, a rule needs two
reviewers, and a Python http.server receives the webhook."""

import concurrent.futures
import http.server
import json
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import BIN, Demo, Restarted, finish, run, start_exec

HELD = re.compile(r"^gatehouse: held by rule (\S+) \(([a-z2-7]{8})\): ")
RETURN = {"GATEHOUSE_APPROVAL": "return"}


def marker_command(marker, text="x"):
    """A held but harmless command: python inline code (held by the default policy) appending
    `text` to `marker`."""
    return f"python3 -c \"open('{marker}', 'a').write('{text}')\""


def ssh(demo, host, command, config=None):
    """The OpenSSH client through the demo's ssh_config (or `config`), non-interactive."""
    return subprocess.run(
        ["ssh", "-F", str(config or demo.dir / "ssh_config"), "-o", "BatchMode=yes", host, command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )


def console(demo, command, host="console", config=None):
    return ssh(demo, host, command, config)


def listed(demo, all_states=False):
    """`ssh console approvals --json [--all]`, by request id."""
    out = console(demo, "approvals --json" + (" --all" if all_states else ""))
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.decode().splitlines()]
    return {row["id"]: row for row in rows}


def held_line(chan):
    """The first stderr line of a held exec (wait mode prints it before waiting)."""
    line = b""
    while not line.endswith(b"\n"):
        byte = chan.recv_stderr(1)
        if not byte:
            break
        line += byte
    return line.decode()


def request_id(line, rule=None):
    m = HELD.match(line)
    assert m, line
    if rule is not None:
        assert m.group(1) == rule, line
    return m.group(2)


# --- wait mode: approve and deny ---------------------------------------------------------------


@pytest.fixture(scope="module")
def demo():
    d = Demo()
    yield d
    d.stop()


def test_paramiko_waits_and_runs_once_after_approve(demo):
    marker = demo.dir / "wait-approved"
    command = (
        f"python3 -c \"import sys; print('ran', open('{marker}', 'a').write('x')); sys.exit(3)\""
    )
    client = demo.connect()
    chan = start_exec(client, command)
    line = held_line(chan)
    rid = request_id(line, "interpreter")
    assert "waiting for approval" in line
    row = listed(demo)[rid]
    assert (row["identity"], row["target"], row["command"]) == ("agent", "demo", command)
    assert not marker.exists(), "ran before approval"

    ok = console(demo, f"approve {rid} --comment 'looks fine'")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.decode() == f"{rid} approved (1 of 1 approvals)\n"
    # The command's own output and exit status, nothing else after the held line.
    assert finish(chan) == (b"ran 1\n", b"", 3)
    assert marker.read_text() == "x"
    # Single use: the request is spent.
    again = console(demo, f"approve {rid}")
    assert again.returncode == 1, again.stderr
    assert listed(demo, all_states=True)[rid]["state"] == "executed"
    client.close()


def test_paramiko_denied_with_comment_gets_126(demo):
    marker = demo.dir / "wait-denied"
    client = demo.connect()
    chan = start_exec(client, marker_command(marker))
    rid = request_id(held_line(chan), "interpreter")
    deny = console(demo, f"deny {rid} --comment 'use reload, not restart'")
    assert deny.returncode == 0, deny.stderr
    assert deny.stdout.decode() == f"{rid} denied (0 of 1 approvals)\n"
    out, err, status = finish(chan)
    assert (out, status) == (b"", 126)
    assert err.decode() == "gatehouse: denied by reviewer: use reload, not restart\n"
    assert not marker.exists()
    client.close()


# --- fifty at once -----------------------------------------------------------------------------


def test_fifty_held_requests_approved_in_bulk_each_run_once(demo):
    n = 50
    lines_file = demo.dir / "bulk-lines"
    seen = queue.Queue()

    def agent(i):
        client = demo.connect()
        try:
            chan = start_exec(client, marker_command(lines_file, f"line-{i}\\n"), timeout=120)
            line = held_line(chan)
            seen.put(line)
            return request_id(line), finish(chan, timeout=120)
        finally:
            client.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(agent, i) for i in range(n)]
        told = {request_id(seen.get(timeout=120)) for _ in range(n)}
        # The reviewer's script: list the queue, approve every request in it.
        pending = listed(demo)
        ours = {rid for rid, row in pending.items() if str(lines_file) in row["command"]}
        assert ours == told and len(ours) == n
        for rid in sorted(ours):
            ok = console(demo, f"approve {rid}")
            assert ok.returncode == 0, ok.stderr
        results = [f.result(timeout=180) for f in futures]

    assert sorted(rid for rid, _ in results) == sorted(told)
    for rid, result in results:
        assert result == (b"", b"", 0), (rid, result)
    lines = lines_file.read_text().splitlines()
    assert sorted(lines) == sorted(f"line-{i}" for i in range(n)), "a command ran twice or never"
    assert not ours & set(listed(demo))
    states = listed(demo, all_states=True)
    assert {states[rid]["state"] for rid in ours} == {"executed"}


# --- restart with pending requests -------------------------------------------------------------


def test_restart_keeps_pending_requests_and_an_approval_becomes_a_single_grant():
    demo = Demo()
    restarted = None
    try:
        in_return = demo.dir / "restart-return"
        in_wait = demo.dir / "restart-wait"
        client = demo.connect()
        out, err, status = run(client, marker_command(in_return), env=RETURN)
        assert status == 75, err
        returned = request_id(err.decode(), "interpreter")
        waiting_client = demo.connect()
        chan = start_exec(waiting_client, marker_command(in_wait))
        waited = request_id(held_line(chan), "interpreter")
        assert set(listed(demo)) >= {returned, waited}

        # gatehouse stops while one agent waits: that agent is told so, without an exit status.
        demo.proc.send_signal(signal.SIGTERM)
        assert finish(chan) == (b"", b"gatehouse: shutting down; the command was cut off\n", -1)
        client.close()
        waiting_client.close()
        assert demo.proc.wait(30) == 0

        restarted = Restarted(demo)
        rows = listed(demo)
        assert rows[returned]["state"] == rows[waited]["state"] == "pending"
        assert rows[returned]["command"] == marker_command(in_return)
        assert rows[waited]["command"] == marker_command(in_wait)
        for rid in (returned, waited):
            ok = console(demo, f"approve {rid}")
            assert ok.returncode == 0, ok.stderr
        assert not in_return.exists() and not in_wait.exists()

        client = demo.connect()
        # The identical resends by the same identity run at once (the approvals are grants),
        # whichever mode they ask for.
        assert run(client, marker_command(in_wait)) == (b"", b"", 0)
        assert run(client, marker_command(in_return), env=RETURN) == (b"", b"", 0)
        assert in_return.read_text() == "x" and in_wait.read_text() == "x"
        # Each grant was single use: the next resend is a new request.
        out, err, status = run(client, marker_command(in_return), env=RETURN)
        assert status == 75, err
        assert request_id(err.decode()) not in (returned, waited)
        assert in_return.read_text() == "x"
        states = listed(demo, all_states=True)
        assert states[returned]["state"] == states[waited]["state"] == "executed"
        client.close()
    finally:
        if restarted:
            restarted.stop()
        demo.stop()


def test_a_crash_neither_reuses_a_spent_grant_nor_loses_a_waiting_request():
    demo = Demo()
    restarted = None
    try:
        spent = demo.dir / "crash-spent"
        in_wait = demo.dir / "crash-wait"
        client = demo.connect()
        out, err, status = run(client, marker_command(spent), env=RETURN)
        assert status == 75, err
        granted = request_id(err.decode())
        assert console(demo, f"approve {granted}").returncode == 0
        assert run(client, marker_command(spent), env=RETURN) == (b"", b"", 0)
        waiting_client = demo.connect()
        chan = start_exec(waiting_client, marker_command(in_wait))
        waited = request_id(held_line(chan))

        # gatehouse dies at once, with the agent still waiting; its sshd is left behind.
        demo.proc.send_signal(signal.SIGKILL)
        demo.proc.wait(30)
        sshd_pid = int((demo.dir / "sshd" / "sshd.pid").read_text())
        subprocess.run(["kill", "-TERM", str(sshd_pid)], check=True)
        while subprocess.run(["kill", "-0", str(sshd_pid)], capture_output=True).returncode == 0:
            time.sleep(0.05)
        client.close()
        waiting_client.close()

        restarted = Restarted(demo)
        states = listed(demo, all_states=True)
        assert (states[granted]["state"], states[waited]["state"]) == ("executed", "pending")
        client = demo.connect()
        out, err, status = run(client, marker_command(spent), env=RETURN)
        assert status == 75, "the spent grant ran the command again"
        assert request_id(err.decode()) != granted
        assert spent.read_text() == "x"
        assert console(demo, f"approve {waited}").returncode == 0
        assert run(client, marker_command(in_wait)) == (b"", b"", 0)
        assert in_wait.read_text() == "x"
        client.close()
    finally:
        if restarted:
            restarted.stop()
        demo.stop()


# --- a webhook receiver, and a rule that needs two reviewers -----------------------------------

POLICY = """\
[policies.default]
default = "allow"
reviewers = "reviewers"
approvals = 1

[[rules]]
id = "two-person-touch"
action = "hold"
programs = ["touch"]
reason = "touch needs two reviewers here"
approvals = 2

[[rules]]
id = "service-restart"
action = "hold"
programs = ["systemctl"]
subcommands = ["restart"]
reason = "restarting a service needs review"
"""


class WebhookReceiver(http.server.ThreadingHTTPServer):
    """Python's http.server on a free loopback port, keeping every POST it receives."""

    def __init__(self):
        self.posts = []
        self.arrived = threading.Condition()
        super().__init__(("127.0.0.1", 0), WebhookHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/hooks/gatehouse"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def wait_for(self, match, timeout=30):
        with self.arrived:
            if not self.arrived.wait_for(lambda: any(match(p) for p in self.posts), timeout):
                raise TimeoutError(f"no matching webhook POST within {timeout} s: {self.posts}")
            return [p for p in self.posts if match(p)]


class WebhookHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        post = {
            "path": self.path,
            "content_type": self.headers["Content-Type"],
            "json": json.loads(body),
        }
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        with self.server.arrived:
            self.server.posts.append(post)
            self.server.arrived.notify_all()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def hooked():
    """A demo with the policy above (`--policy`) notifying a local receiver (`--webhook`)."""
    receiver = WebhookReceiver()
    with tempfile.TemporaryDirectory(prefix="gatehouse-policy-") as tmp:
        policy = Path(tmp) / "policy.toml"
        policy.write_text(POLICY)
        d = Demo(["--policy", str(policy), "--webhook", receiver.url])
        try:
            yield d, receiver
        finally:
            d.stop()
            receiver.shutdown()
            receiver.server_close()


def reviewer_config(demo, names):
    """Issues a reviewer certificate per name (`gatehouse ca issue --groups reviewers`) and
    writes an ssh_config with a `console-NAME` host for each, beside the demo's own hosts."""
    config = (demo.dir / "ssh_config").read_text()
    console_host = re.search(r"^Host console\n(?:  .*\n)+", config, re.M).group(0)
    extra = ""
    for name in names:
        key = demo.dir / "keys" / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
        )
        issued = subprocess.run(
            [BIN, "--config", str(demo.dir / "gatehouse.toml"), "ca", "issue",
             "--identity", name, "--groups", "reviewers", "--ttl", "1h",
             "--public-key", f"{key}.pub"],
            capture_output=True,
        )
        assert issued.returncode == 0, issued.stderr
        host = console_host.replace("Host console\n", f"Host console-{name}\n")
        host = re.sub(r"  IdentityFile .*\n", f"  IdentityFile {key}\n", host)
        host = re.sub(r"  CertificateFile .*\n", f"  CertificateFile {key}-cert.pub\n", host)
        extra += "\n" + host
    path = demo.dir / "ssh_config.reviewers"
    path.write_text(config + extra)
    return path


def test_two_reviewer_rule_needs_two_different_reviewers(hooked):
    demo, _ = hooked
    config = reviewer_config(demo, ["alice", "bob"])
    marker = demo.dir / "two-person"
    client = demo.connect()
    chan = start_exec(client, f"touch {marker}")
    rid = request_id(held_line(chan), "two-person-touch")

    first = console(demo, f"approve {rid}", "console-alice", config)
    assert first.returncode == 0, first.stderr
    assert first.stdout.decode() == f"{rid} pending (1 of 2 approvals)\n"
    # The same reviewer again does not count twice.
    twice = console(demo, f"approve {rid} --comment again", "console-alice", config)
    assert twice.returncode == 126
    assert twice.stderr.decode() == f"gatehouse: alice already decided request {rid}\n"
    row = listed(demo)[rid]
    assert (row["state"], row["approvals"], row["approvals_required"]) == ("pending", 1, 2)
    assert not chan.exit_status_ready() and not marker.exists()

    second = console(demo, f"approve {rid}", "console-bob", config)
    assert second.returncode == 0, second.stderr
    assert second.stdout.decode() == f"{rid} approved (2 of 2 approvals)\n"
    assert finish(chan) == (b"", b"", 0)
    assert marker.exists()
    row = listed(demo, all_states=True)[rid]
    assert row["state"] == "executed"
    assert [(d["reviewer"], d["approve"]) for d in row["decisions"]] == [
        ("alice", True),
        ("bob", True),
    ]
    client.close()


def test_webhook_receives_each_held_command(hooked):
    demo, receiver = hooked
    client = demo.connect()
    assert run(client, "echo allowed") == (b"allowed\n", b"", 0)
    command = "systemctl restart nginx"
    out, err, status = run(client, command, env=RETURN)
    assert status == 75, err
    rid = request_id(err.decode(), "service-restart")
    # Resent while pending: the same request, not a second notification.
    out, err, status = run(client, command, env=RETURN)
    assert (status, request_id(err.decode())) == (75, rid)

    posts = receiver.wait_for(lambda p: p["json"].get("id") == rid)
    assert len(posts) == 1, posts
    post = posts[0]
    assert post["path"] == "/hooks/gatehouse"
    assert post["content_type"] == "application/json"
    body = post["json"]
    assert body["state"] == "pending"
    assert (body["identity"], body["target"], body["command"], body["rule"]) == (
        "agent",
        "demo",
        command,
        "service-restart",
    )
    assert body["reason"] == "restarting a service needs review"
    assert (body["reviewers"], body["approvals_required"]) == ("reviewers", 1)
    text = body["text"]
    for part in (rid, "agent", "`systemctl restart nginx`", "demo", "service-restart"):
        assert part in text, (part, text)
    # Only held commands are posted: every POST so far names a request gatehouse holds.
    everything = listed(demo, all_states=True)
    assert all(p["json"]["id"] in everything for p in receiver.posts)
    client.close()
