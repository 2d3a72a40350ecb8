"""paramiko as the agent: exec, refusals, refused requests, concurrency."""

import concurrent.futures
import socket
import time

import paramiko
import pytest

from conftest import run


def test_exec_output_and_status(demo):
    client = demo.connect()
    out, err, status = run(client, "printf hello; printf oops >&2; exit 7")
    assert (out, err, status) == (b"hello", b"oops", 7)
    client.close()


def test_denied_command_exit_126_with_rule(demo):
    client = demo.connect()
    marker = demo.dir / "paramiko-denied"
    out, err, status = run(client, f"touch {marker}; mkfs.ext4 /dev/gatehouse-test-nonexistent")
    assert status == 126
    assert err.decode().startswith("gatehouse: denied by rule ")
    assert err.count(b"\n") == 1
    assert out == b""
    assert not marker.exists()
    client.close()


def test_many_channels_on_one_connection(demo):
    client = demo.connect()
    for i in range(20):
        out, _, status = run(client, f"echo {i}")
        assert (out, status) == (f"{i}\n".encode(), 0)
    client.close()


def test_hundred_concurrent_agents_twenty_execs_each(demo):
    def agent(n):
        client = demo.connect()
        try:
            for i in range(20):
                out, err, status = run(client, f"echo {n}-{i}")
                assert status == 0, err
                assert out == f"{n}-{i}\n".encode()
        finally:
            client.close()
        return n

    with concurrent.futures.ThreadPoolExecutor(max_workers=100) as pool:
        done = sorted(pool.map(agent, range(100)))
    assert done == list(range(100))


def read_until_exit_status(chan, timeout=60):
    """Reads the way many agents do: stop once the exit status is in and nothing is buffered."""
    out = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if chan.recv_ready():
            out += chan.recv(65536)
        elif chan.exit_status_ready() and not chan.recv_ready():
            break
        else:
            time.sleep(0.001)
    return out, chan.recv_exit_status()


def test_exit_status_comes_after_all_output(demo):
    # OpenSSH's sshd sends exit-status as soon as the command is reaped, sometimes while output
    # is still in its buffers (about one exec in twenty here, straight to sshd). gatehouse holds
    # the status back until the output and EOF are through, so this reader never stops short.
    client = demo.connect()
    short = 0
    for _ in range(100):
        chan = client.get_transport().open_session(timeout=30)
        chan.settimeout(60)
        chan.exec_command("head -c 100000 /dev/zero")
        out, status = read_until_exit_status(chan)
        chan.close()
        assert status == 0
        short += len(out) != 100_000
    client.close()
    assert short == 0, f"{short} of 100 execs reported their exit status before all output"


def test_forwarding_agent_and_x11_are_refused(demo):
    client = demo.connect()
    transport = client.get_transport()
    with pytest.raises(paramiko.ChannelException):
        transport.open_channel("direct-tcpip", ("127.0.0.1", 9), ("127.0.0.1", 0), timeout=10)
    with pytest.raises(paramiko.SSHException):
        transport.request_port_forward("127.0.0.1", 0)
    chan = transport.open_session()
    with pytest.raises(paramiko.SSHException):
        chan.request_x11()
    chan.close()
    chan = transport.open_session()
    chan.settimeout(10)
    # paramiko sends auth-agent-req without waiting; the refusal shows in gatehouse's log.
    paramiko.agent.AgentRequestHandler(chan)
    chan.exec_command("echo still-fine")
    assert chan.recv(100) == b"still-fine\n"
    chan.close()
    client.close()
    demo.log_containing("agent forwarding", "X11 forwarding")


def test_invoke_shell_is_refused(demo):
    client = demo.connect()
    chan = client.get_transport().open_session()
    chan.settimeout(10)
    chan.get_pty()
    chan.invoke_shell()
    err = b""
    while not chan.exit_status_ready() or chan.recv_stderr_ready():
        if chan.recv_stderr_ready():
            err += chan.recv_stderr(4096)
        else:
            time.sleep(0.01)
    assert chan.recv_exit_status() == 126
    assert err.startswith(b"gatehouse: interactive shells are not available")
    client.close()


def test_public_key_offer_alone_never_authenticates(demo):
    """GHSA-3cjp-w4cp-m9c8: an offer (no signature) answered with PK_OK must not log anyone in."""
    sock = socket.create_connection(("127.0.0.1", demo.port), timeout=10)
    transport = paramiko.Transport(sock)
    transport.start_client(timeout=10)
    key = demo.agent_key()
    # Send an unsigned publickey request by hand: service request, then USERAUTH_REQUEST with
    # the "has signature" flag false.
    from paramiko.common import MSG_SERVICE_REQUEST, MSG_USERAUTH_REQUEST
    from paramiko.message import Message

    m = Message()
    m.add_byte(bytes([MSG_SERVICE_REQUEST]))
    m.add_string("ssh-userauth")
    transport._send_message(m)
    time.sleep(0.3)
    m = Message()
    m.add_byte(bytes([MSG_USERAUTH_REQUEST]))
    m.add_string("demo")
    m.add_string("ssh-connection")
    m.add_string("publickey")
    m.add_boolean(False)
    m.add_string(key.public_blob.key_type)
    m.add_string(key.public_blob.key_blob)
    transport._send_message(m)
    time.sleep(0.5)
    assert not transport.is_authenticated()
    with pytest.raises(paramiko.SSHException):
        transport.open_session(timeout=5)
    transport.close()


def test_paramiko_with_aes_gcm_gets_aes_gcm_and_older_ones_still_connect(demo, monkeypatch):
    """paramiko takes AES-CTR with HMAC whenever it is offered, at several times AES-GCM's cost
    to itself; a client announcing 3.5 or later (the first with AES-GCM) is offered only AES-GCM.
    One announcing an older release is offered the configured list and takes AES-CTR."""
    assert tuple(int(n) for n in paramiko.__version__.split(".")[:2]) >= (3, 5)
    for client_id, cipher in (
        (paramiko.Transport._CLIENT_ID, "aes256-gcm@openssh.com"),
        ("paramiko_3.4.1", "aes128-ctr"),
    ):
        monkeypatch.setattr(paramiko.Transport, "_CLIENT_ID", client_id)
        client = demo.connect()
        transport = client.get_transport()
        assert transport.local_version == "SSH-2.0-" + client_id
        assert (transport.local_cipher, transport.remote_cipher) == (cipher, cipher)
        assert run(client, "echo ok")[0] == b"ok\n"
        client.close()
