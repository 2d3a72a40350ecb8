"""The AutoGen example end to end: examples/autogen/agent.py with its scripted (offline) model against a
real `gatehouse demo`, a reviewer approving through `ssh console approve`, and gatehouse's own records."""

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "autogen"
sys.path.insert(0, str(EXAMPLE))

import agent as example  # noqa: E402
from gatehouse_autogen import GatehouseSSH, parse_result  # noqa: E402


def console(demo, command, timeout=30):
    return subprocess.run(
        ["ssh", "-F", str(demo.dir / "ssh_config"), "-o", "BatchMode=yes", "console", command],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


class Approver(threading.Thread):
    """A reviewer: polls `approvals --json` for a pending request whose command contains `needle`,
    then approves it through the console, once."""

    def __init__(self, demo, needle, timeout=120):
        super().__init__(daemon=True)
        self.demo, self.needle, self.timeout = demo, needle, timeout
        self.approved = None
        self.error = None

    def run(self):
        deadline = time.time() + self.timeout
        try:
            while time.time() < deadline:
                try:
                    listed = console(self.demo, "approvals --json")
                except subprocess.TimeoutExpired:
                    continue
                assert listed.returncode == 0, listed.stderr
                for line in listed.stdout.splitlines():
                    req = json.loads(line)
                    if req["state"] == "pending" and self.needle in req["command"]:
                        done = console(self.demo, f"approve {req['id']}")
                        assert done.returncode == 0, done.stderr
                        self.approved = req
                        return
                time.sleep(0.2)
            self.error = "no pending request for " + self.needle
        except Exception as e:  # reported by the test
            self.error = repr(e)


def casts(demo):
    return [p.read_text() for p in sorted((demo.dir / "recordings").rglob("*.cast"))]


def cast_for(demo, command):
    """The recording whose `cmd:` marker is exactly `command`, once every recording is sealed
    (an exec's recording is written and sealed just after the agent has its exit status)."""
    deadline = time.monotonic() + 10
    while any((demo.dir / "recordings").rglob("*.open")) and time.monotonic() < deadline:
        time.sleep(0.05)
    marker = json.dumps("cmd: " + command)
    found = [c for c in casts(demo) if f'"m", {marker}]' in c]
    assert len(found) == 1, (command, len(found))
    return found[0]


def test_agent_offline_end_to_end(demo):
    state = example.state_dir(demo.dir)
    client = example.model_client("demo", state)
    restarted = state / "web-restarted"
    refused_marker = state / "cleanup-started"

    approver = Approver(demo, str(restarted))
    approver.start()
    holds = []
    result = asyncio.run(
        example.run_agent(
            demo.dir,
            "demo",
            client=client,
            console=False,
            on_hold=lambda *a: holds.append(a),
            command_timeout=150,  # bounded: a lost approval fails the test instead of hanging it
        )
    )
    approver.join(10)
    assert approver.error is None and approver.approved, f"{approver.error}\n{demo.log()[-4000:]}"
    request_id = approver.approved["id"]
    assert approver.approved["rule"] == "interpreter"

    # The agent's messages: three tool calls, their results as the model read them, then the report.
    results = [
        r.content
        for m in result.messages
        if m.type == "ToolCallExecutionEvent"
        for r in m.content
    ]
    assert len(results) == 3, f"{results}\n{demo.log()[-4000:]}"
    assert results[0].startswith("[demo] exit status: 0\nstdout:\nFilesystem")
    assert results[1] == (
        "[demo] blocked by gatehouse rule rm-recursive-root: recursive deletion of /, a system "
        "directory or a home directory is never routine. Do not retry this command; choose another approach."
    )
    assert results[2].startswith("[demo] exit status: 0\n")
    assert f"held as request {request_id} by gatehouse rule interpreter" in results[2]
    final = result.messages[-1]
    assert final.type == "TextMessage" and final.source == "ops"
    assert "blocked by gatehouse rule rm-recursive-root" in final.content
    assert "TERMINATE" in final.content

    # The refusal reached the model's context: the model call after the denial saw the reason.
    assert len(client.create_calls) == 4
    context = "\n".join(str(m.content) for m in client.create_calls[2]["messages"])
    assert "blocked by gatehouse rule rm-recursive-root" in context
    assert "Do not retry this command" in context
    # ...and no credential ever did: no key material and no key path in anything the model saw.
    everything = "\n".join(str(m.content) for c in client.create_calls for m in c["messages"])
    for secret in ("BEGIN OPENSSH PRIVATE KEY", "ssh-ed25519-cert", "/keys/agent"):
        assert secret not in everything

    # The wait-mode hold was reported while the call waited.
    assert [h[2] for h in holds] == [request_id]

    # gatehouse's own records: the refused line never reached the target; the held one ran once.
    assert not refused_marker.exists(), "the denied line reached the target"
    assert restarted.read_text() == "x"
    allowed = cast_for(demo, "df -h /")
    assert '"allow rule ' in allowed and '"exit 0"' in allowed
    denied = cast_for(demo, f"touch {refused_marker}; rm -rf /var/log")
    assert '"deny rule rm-recursive-root: ' in denied
    held = cast_for(demo, f"python3 -c \"open('{restarted}','a').write('x')\"")
    assert f'"held {request_id} rule interpreter' in held
    assert '"approved by reviewer"' in held and '"exit 0"' in held


def test_return_mode_resends_until_approved_and_runs_once(demo):
    marker = demo.dir / "return-mode-marker"
    command = f"python3 -c \"open('{marker}','a').write('x')\""

    async def scenario():
        async with GatehouseSSH.from_ssh_config(demo.dir / "ssh_config", "demo", approval="return") as ssh:
            first = await ssh.run("demo", command)
            assert first.decision == "held", first
            assert first.exit_status == 75
            text = first.for_model()
            assert f"held for approval as request {first.request_id}" in text
            assert "the identical command will run once a reviewer approves" in text
            conn = ssh._conns["demo"]

            # Not approved within the limit: still held, same request, nothing ran.
            late = await ssh.run_until_decided("demo", command, max_wait=1, backoff=(0.3, 2, 1))
            assert late.decision == "held" and late.request_id == first.request_id
            assert not marker.exists()

            approver = Approver(demo, str(marker))
            approver.start()
            done = await ssh.run_until_decided("demo", command, max_wait=60, backoff=(0.2, 1.5, 1))
            approver.join(10)
            assert approver.error is None and approver.approved, f"{approver.error}\n{demo.log()[-4000:]}"
            assert approver.approved["id"] == first.request_id
            assert done.decision == "ran" and done.exit_status == 0, f"{done}\n{demo.log()[-4000:]}"
            assert ssh._conns["demo"] is conn, "the connection was not reused"

            # A policy refusal ends the loop at once.
            refused = await ssh.run_until_decided("demo", "rm -rf /var/log", max_wait=60)
            assert refused.decision == "denied" and refused.rule == "rm-recursive-root"

    asyncio.run(scenario())
    assert marker.read_text() == "x"


def test_login_hook_runs_near_expiry_and_failures_stay_free_of_paths(demo, tmp_path):
    ran = tmp_path / "login-ran"
    login = [sys.executable, "-c", f"open({str(ran)!r}, 'a').write('L')"]

    async def scenario():
        cfg = demo.dir / "ssh_config"
        # The demo certificate is valid for hours; "renew within 10 years" forces the hook.
        async with GatehouseSSH.from_ssh_config(cfg, "demo", login_command=login, renew_before=10 * 365 * 86400) as ssh:
            assert ssh.certificate_expires_at() > time.time()
            res = await ssh.run("demo", "echo ok")
            assert res.decision == "ran" and res.stdout == "ok\n"
        # No login command: the still-valid certificate is used as is.
        async with GatehouseSSH.from_ssh_config(cfg, "demo", renew_before=10 * 365 * 86400) as ssh:
            assert (await ssh.run("demo", "true")).exit_status == 0
        # A failing login command: an error for the model, naming no path.
        bad = [sys.executable, "-c", "raise SystemExit(3)"]
        async with GatehouseSSH.from_ssh_config(cfg, "demo", login_command=bad, renew_before=10 * 365 * 86400) as ssh:
            text = await ssh.run_command("demo", "true")
            assert "renewing the gatehouse certificate failed" in text
            assert str(demo.dir) not in text
        # Host keys are checked: an unrelated known_hosts refuses the connection.
        other = tmp_path / "known_hosts"
        other.write_text((demo.dir / "known_hosts").read_text().replace("gatehouse ", "someone-else ", 1))
        async with GatehouseSSH.from_ssh_config(cfg, "demo", known_hosts=other) as ssh:
            text = await ssh.run_command("demo", "true")
            assert "could not run the command" in text and str(demo.dir) not in text

    asyncio.run(scenario())
    assert ran.read_text() == "L"


@pytest.mark.parametrize(
    "status,err,decision,expect",
    [
        (126, "gatehouse: denied by rule r1: because\n", "denied", "blocked by gatehouse rule r1: because."),
        (126, "gatehouse: held by rule r2 (abcd2345): needs review: waiting for approval, up to 10m\n"
              "gatehouse: denied by alice: use reload\n", "refused", "denied by alice: use reload"),
        (75, "gatehouse: held by rule r3 (wxyz2345): needs review: after approval, resend the same command "
             "within 15m\n", "held", "held for approval as request wxyz2345 (gatehouse rule r3: needs review)"),
        (126, "sh: 1: ./x: Permission denied\n", "ran", "exit status: 126"),
        (0, "gatehouse: held by rule r4 (aaaa2345): needs review: waiting for approval, up to 10m\nwarn\n",
         "ran", "held as request aaaa2345 by gatehouse rule r4"),
    ],
)
def test_results_are_written_for_the_model(status, err, decision, expect):
    res = parse_result("h", "cmd", status, "", err)
    assert res.decision == decision
    assert expect in res.for_model()


def test_output_is_cut_past_the_limit_saying_so():
    from gatehouse_autogen import _Capped

    cap = _Capped(100)
    for _ in range(1000):
        cap.add(b"0123456789")
    text = cap.text()
    assert cap.cut == 10000 - 100
    assert "[... 9900 bytes cut ...]" in text
    res = parse_result("h", "cmd", 0, text, "", cap.cut, 0)
    assert "stdout (cut: 9900 bytes in the middle left out):" in res.for_model()
