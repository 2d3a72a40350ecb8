"""Run shell commands on hosts through a gatehouse bastion, as an AutoGen tool.

    from gatehouse_autogen import GatehouseSSH

    ssh = GatehouseSSH(
        "bastion.example.com", port=2222,
        key="~/.gatehouse/id_ed25519",          # what `gatehouse login` writes
        known_hosts="~/.gatehouse/known_hosts",  # gatehouse's host key, pinned
        login_command=["gatehouse", "login"],           # re-run when the certificate is about to expire
    )
    agent = AssistantAgent("ops", model_client=..., tools=[ssh.tool()], max_tool_iterations=10)

The model sees one tool, `run_command(host, command)`, and text written for it: the output, the exit
status, and what gatehouse decided (ran, blocked by a rule, held for a reviewer). It never sees a key,
a certificate or a path to one.

gatehouse conventions this module relies on (see the gatehouse README):
  * login name = target name: `ssh web-1@bastion` runs commands on target `web-1`;
  * exit 126 + one stderr line `gatehouse: denied by rule R: reason` = refused by policy, nothing ran;
  * a hold in wait mode writes `gatehouse: held by rule R (ID): ...: waiting for approval` and then
    waits; the call simply returns later with the command's own result (or 126 if a reviewer refuses);
  * in return mode (env GATEHOUSE_APPROVAL=return) a hold exits 75 with
    `gatehouse: held by rule R (ID): ...: after approval, resend the same command within 15m`;
    the byte-identical resend after approval runs the command once.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Callable, Optional, Sequence

import asyncssh

__all__ = ["GatehouseSSH", "CommandResult", "parse_ssh_config_host"]

EXIT_REFUSED = 126
EXIT_HELD = 75

_DENIED_RULE = re.compile(r"^gatehouse: denied by rule (\S+): (.*)$")
_DENIED_OTHER = re.compile(r"^gatehouse: denied by (.+?)(?:: (.*))?$")
_HELD = re.compile(r"^gatehouse: held by rule (\S+) \(([^)]+)\): (.*)$")
_HELD_SUFFIXES = (
    re.compile(r": waiting for approval, up to \S+$"),
    re.compile(r": after approval, resend the same command within \S+$"),
)
# Target names are SSH login names; keep them to what gatehouse itself accepts as a name.
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class GatehouseError(Exception):
    """A failure the model can read: the message never names keys, certificates or paths."""


@dataclass
class CommandResult:
    """One command's outcome, parsed from gatehouse's conventions."""

    host: str
    command: str
    exit_status: Optional[int]
    stdout: str = ""
    stderr: str = ""
    stdout_cut: int = 0  # bytes left out past the limit
    stderr_cut: int = 0
    decision: str = "ran"  # ran | denied | held | refused | error
    rule: Optional[str] = None
    reason: Optional[str] = None
    request_id: Optional[str] = None
    notes: list[str] = field(default_factory=list)  # gatehouse's own stderr lines
    error: Optional[str] = None
    signal: Optional[str] = None  # set when the command was killed by a signal

    @property
    def ran(self) -> bool:
        return self.decision == "ran"

    def for_model(self) -> str:
        """The text the model reads."""
        if self.decision == "error":
            return f"[{self.host}] could not run the command: {self.error}"
        if self.decision == "denied":
            return (
                f"[{self.host}] blocked by gatehouse rule {self.rule}: {self.reason}. "
                "Do not retry this command; choose another approach."
            )
        if self.decision == "refused":
            return (
                f"[{self.host}] refused by gatehouse: {self.reason}. "
                "The command did not run. Do not retry this command; choose another approach."
            )
        if self.decision == "held":
            return (
                f"[{self.host}] held for approval as request {self.request_id} "
                f"(gatehouse rule {self.rule}: {self.reason}); the identical command will run once a "
                "reviewer approves. Nothing ran yet. To run it after approval, send exactly the same "
                "command again."
            )
        parts = [f"[{self.host}] exit status: {self.exit_status}"]
        if self.signal:
            parts[0] += f" (killed by signal {self.signal})"
        if self.request_id:
            parts.append(
                f"(held as request {self.request_id} by gatehouse rule {self.rule}; a reviewer approved it)"
            )
        parts.append(_section("stdout", self.stdout, self.stdout_cut))
        parts.append(_section("stderr", self.stderr, self.stderr_cut))
        return "\n".join(parts)


def _section(name: str, text: str, cut: int) -> str:
    if not text and not cut:
        return f"{name}: (empty)"
    head = f"{name} (cut: {cut} bytes in the middle left out):" if cut else f"{name}:"
    return f"{head}\n{text}".rstrip("\n")


class _Capped:
    """Keeps the first and last bytes of a stream, bounded in memory whatever the stream's size.
    The head and the tail are kept because the end of output is usually where errors are."""

    def __init__(self, limit: int):
        self.head_max = limit * 2 // 3
        self.tail_max = limit - self.head_max
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_max - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self.tail_max:
                del self.tail[: len(self.tail) - self.tail_max]

    @property
    def cut(self) -> int:
        return self.total - len(self.head) - len(self.tail)

    def text(self) -> str:
        head = self.head.decode("utf-8", errors="replace")
        if not self.cut:
            return head + self.tail.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        return f"{head}\n[... {self.cut} bytes cut ...]\n{tail}"


def parse_result(
    host: str, command: str, status: Optional[int], out: str, err: str, out_cut: int = 0, err_cut: int = 0
) -> CommandResult:
    """Turns exit status + output into a CommandResult, reading gatehouse's stderr lines.

    Only stderr lines *gatehouse* writes decide anything: they come before any of the command's own
    output (a hold line) or are the only output (a refusal), so a command printing a look-alike
    line in the middle of its output is not mistaken for a decision.
    """
    lines = err.splitlines(keepends=True)
    notes: list[str] = []
    while lines and lines[0].startswith("gatehouse: "):
        notes.append(lines.pop(0).rstrip("\n"))
    rest = "".join(lines)
    res = CommandResult(host=host, command=command, exit_status=status, notes=notes)

    for note in notes:
        m = _HELD.match(note)
        if m:
            res.rule, res.request_id, reason = m.group(1), m.group(2), m.group(3)
            for suffix in _HELD_SUFFIXES:
                reason = suffix.sub("", reason)
            res.reason = reason

    nothing_else = not out and not rest and not out_cut and not err_cut
    if status == EXIT_REFUSED and notes and nothing_else:
        last = notes[-1]
        m = _DENIED_RULE.match(last)
        if m:
            res.decision, res.rule, res.reason = "denied", m.group(1), m.group(2)
            return res
        m = _DENIED_OTHER.match(last)
        if m:
            res.decision = "refused"
            res.reason = f"denied by {m.group(1)}" + (f": {m.group(2)}" if m.group(2) else "")
            return res
        res.decision, res.reason = "refused", last[len("gatehouse: ") :]
        return res
    if status == EXIT_HELD and res.request_id and nothing_else:
        res.decision = "held"
        return res

    res.stdout, res.stdout_cut = out, out_cut
    res.stderr, res.stderr_cut = rest, err_cut
    return res


def parse_ssh_config_host(path: str | os.PathLike, host: str) -> dict[str, str]:
    """Reads one literal `Host NAME` block of a simple ssh_config (like the one `gatehouse demo` or
    `gatehouse login` writes): keys lower-cased, values as written."""
    found: dict[str, str] = {}
    current = False
    for raw in Path(path).expanduser().read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if key.lower() == "host":
            current = host in value.split()
            continue
        if current:
            found.setdefault(key.lower(), value.strip())
    if not found:
        raise ValueError(f"no Host {host} in {path}")
    return found


class GatehouseSSH:
    """SSH through gatehouse with one reused asyncssh connection per target.

    Args:
        bastion: gatehouse's address.
        port: gatehouse's SSH port.
        key: private key file; its certificate is `cert` (default: `<key>-cert.pub`).
        known_hosts: known_hosts file holding gatehouse's host key (host key checking is never off).
        host_key_alias: the name gatehouse's key has in `known_hosts`, if not `[bastion]:port`.
        approval: "wait" (a held command blocks until a reviewer decides) or "return" (exit 75 at once).
        login_command: argv re-run when the certificate expires within `renew_before` seconds
            (e.g. ["gatehouse", "login"]); None to never run one.
        output_limit: characters of stdout and of stderr kept for the model.
        command_timeout: seconds one command may take (a wait-mode hold counts).
        hosts: if given, the only target names the tool accepts.
        on_hold: called as on_hold(host, command, request_id, rule, reason) as soon as gatehouse
            holds a command in wait mode (e.g. to tell a reviewer), while the call keeps waiting.
    """

    def __init__(
        self,
        bastion: str,
        port: int = 22,
        *,
        key: str | os.PathLike,
        known_hosts: str | os.PathLike,
        cert: str | os.PathLike | None = None,
        host_key_alias: Optional[str] = None,
        approval: str = "wait",
        login_command: Optional[Sequence[str]] = None,
        renew_before: float = 120,
        output_limit: int = 8000,
        command_timeout: float = 900,
        connect_timeout: float = 20,
        hosts: Optional[Sequence[str]] = None,
        on_hold: Optional[Callable[[str, str, str, str, str], object]] = None,
    ):
        if approval not in ("wait", "return"):
            raise ValueError("approval must be 'wait' or 'return'")
        self.bastion = bastion
        self.port = port
        self._key_path = Path(key).expanduser()
        self._cert_path = Path(cert).expanduser() if cert else Path(str(self._key_path) + "-cert.pub")
        self._known_hosts = str(Path(known_hosts).expanduser())
        self._host_key_alias = host_key_alias
        self.approval = approval
        self.login_command = list(login_command) if login_command else None
        self.renew_before = renew_before
        self.output_limit = output_limit
        self.command_timeout = command_timeout
        self.connect_timeout = connect_timeout
        self.hosts = set(hosts) if hosts else None
        self.on_hold = on_hold
        self._conns: dict[str, asyncssh.SSHClientConnection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._login_lock = asyncio.Lock()
        self._client_key = None  # (private key, certificate), loaded lazily and after each login

    @classmethod
    def from_ssh_config(cls, ssh_config: str | os.PathLike, host: str = "demo", **kwargs) -> "GatehouseSSH":
        """Builds a client from one `Host` block of an ssh_config, e.g. the `demo` host that
        `gatehouse demo --dir DIR` writes to DIR/ssh_config."""
        h = parse_ssh_config_host(ssh_config, host)
        kwargs.setdefault("key", h["identityfile"])
        if "certificatefile" in h:
            kwargs.setdefault("cert", h["certificatefile"])
        kwargs.setdefault("known_hosts", h["userknownhostsfile"])
        kwargs.setdefault("host_key_alias", h.get("hostkeyalias"))
        return cls(h.get("hostname", host), int(h.get("port", "22")), **kwargs)

    # ---- the tool ------------------------------------------------------------------------------

    def tool(self, name: str = "run_command"):
        """The AutoGen FunctionTool the model calls."""
        from autogen_core.tools import FunctionTool

        async def run_command(
            host: Annotated[str, "target host name, as granted by gatehouse (e.g. web-1)"],
            command: Annotated[str, "one shell command line to run on that host"],
        ) -> str:
            return (await self.run(host, command)).for_model()

        mode = (
            "A held command waits for a reviewer, so the call can take minutes."
            if self.approval == "wait"
            else "A held command returns a request id at once; send the identical command again "
            "after a reviewer approves it."
        )
        return FunctionTool(
            run_command,
            name=name,
            description=(
                "Run one shell command line on a host through the gatehouse SSH bastion and get its "
                "stdout, stderr and exit status. gatehouse may block a command by policy (then choose "
                "another approach, do not retry) or hold it for a human reviewer. " + mode
            ),
        )

    async def run_command(self, host: str, command: str) -> str:
        """The tool's body: runs `command` on `host` and returns text for the model."""
        return (await self.run(host, command)).for_model()

    # ---- running commands ----------------------------------------------------------------------

    async def run(self, host: str, command: str, *, approval: Optional[str] = None) -> CommandResult:
        """Runs one command line on `host`; never raises for the model's mistakes or for refusals."""
        if not _HOST_NAME.match(host or ""):
            return CommandResult(host, command, None, decision="error", error=f"invalid host name {host!r}")
        if self.hosts is not None and host not in self.hosts:
            return CommandResult(
                host, command, None, decision="error",
                error=f"unknown host; known hosts: {', '.join(sorted(self.hosts))}",
            )
        mode = approval or self.approval
        env = {"GATEHOUSE_APPROVAL": "return"} if mode == "return" else {}
        try:
            proc = await self._start(host, command, env)
        except GatehouseError as e:
            return CommandResult(host, command, None, decision="error", error=str(e))
        out, err = _Capped(self.output_limit), _Capped(self.output_limit)
        try:
            status, signal_name = await asyncio.wait_for(
                self._collect(proc, out, err, self._hold_watcher(host, command)), self.command_timeout
            )
        except asyncio.TimeoutError:
            proc.close()
            return CommandResult(
                host, command, None, decision="error",
                error=f"no result within {self.command_timeout:.0f}s (a held command may still be pending); "
                "the command was abandoned",
            )
        except (asyncssh.Error, OSError) as e:
            self._drop(host)
            # The channel was open: the command may have started, so it is never resent automatically.
            return CommandResult(
                host, command, None, decision="error",
                error=f"connection lost while the command ran ({type(e).__name__}); it may or may not have run",
            )
        if signal_name and (status is None or status < 0):
            status = 128 + _signal_number(signal_name)
        res = parse_result(host, command, status, out.text(), err.text(), out.cut, err.cut)
        if signal_name:
            res.signal = signal_name
        return res

    def _hold_watcher(self, host: str, command: str) -> Optional[Callable[[bytes], None]]:
        """Watches the start of stderr for gatehouse's wait-mode hold line and reports it once."""
        if self.on_hold is None:
            return None
        seen = bytearray()
        done = False

        def watch(chunk: bytes) -> None:
            nonlocal done
            if done:
                return
            seen.extend(chunk)
            if b"\n" not in seen:
                if len(seen) > 4096:
                    done = True
                return
            done = True
            first = seen.split(b"\n", 1)[0].decode("utf-8", errors="replace")
            m = _HELD.match(first)
            if m and "waiting for approval" in first:
                reason = m.group(3)
                for suffix in _HELD_SUFFIXES:
                    reason = suffix.sub("", reason)
                try:
                    self.on_hold(host, command, m.group(2), m.group(1), reason)
                except Exception:  # a broken callback must not lose the command's result
                    pass

        return watch

    @staticmethod
    async def _collect(proc: asyncssh.SSHClientProcess, out: _Capped, err: _Capped, watch=None):
        async def pump(stream, sink: _Capped, watch=None):
            while True:
                chunk = await stream.read(65536)
                if not chunk:
                    return
                if watch is not None:
                    watch(chunk)
                sink.add(chunk)

        await asyncio.gather(pump(proc.stdout, out), pump(proc.stderr, err, watch))
        await proc.wait_closed()
        signal_name = proc.exit_signal[0] if proc.exit_signal else None
        return proc.exit_status, signal_name

    async def run_until_decided(
        self,
        host: str,
        command: str,
        max_wait: float = 900,
        backoff: tuple[float, float, float] = (2.0, 2.0, 30.0),
    ) -> CommandResult:
        """Return mode, resending until the command runs or is refused, or `max_wait` seconds pass.

        `backoff` is (first delay, factor, longest delay). Each resend is byte-identical, so after a
        reviewer approves, gatehouse runs the command exactly once. While pending, a resend is answered
        with the same request id and nothing runs. If the limit passes, the last "held" result is
        returned, with a note saying how long it waited.
        """
        deadline = time.monotonic() + max_wait
        delay, factor, longest = backoff
        while True:
            res = await self.run(host, command, approval="return")
            if res.decision != "held":
                return res
            left = deadline - time.monotonic()
            if left <= 0:
                res.notes.append(f"still pending after {max_wait:.0f}s")
                res.reason = f"{res.reason}; no decision within {max_wait:.0f}s"
                return res
            await asyncio.sleep(min(delay, left))
            delay = min(delay * factor, longest)

    async def close(self) -> None:
        for host in list(self._conns):
            self._drop(host)

    async def __aenter__(self) -> "GatehouseSSH":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # ---- connections and credentials -----------------------------------------------------------

    async def _start(self, host: str, command: str, env: dict) -> asyncssh.SSHClientProcess:
        """Opens a channel and starts the command.

        A pooled connection that is found closed is replaced before use. If gatehouse refuses to open
        the channel, nothing was sent, so this retries once on a fresh connection. Any other failure
        may have happened after the exec request left, so the command is never resent: the error
        says it may or may not have run (the next call reconnects)."""
        for attempt in (1, 2):
            conn = await self._connection(host)
            try:
                return await conn.create_process(command, env=env, encoding=None, stdin=asyncssh.DEVNULL)
            except asyncssh.ChannelOpenError as e:
                self._drop(host)
                if attempt == 2:
                    raise GatehouseError(f"gatehouse refused a session on {host}: {e.reason}") from None
            except (asyncssh.Error, OSError, ConnectionError) as e:
                self._drop(host)
                raise GatehouseError(
                    f"the connection to gatehouse failed while starting the command ({type(e).__name__}); "
                    "it may or may not have run: check before sending it again"
                ) from None
        raise AssertionError("unreachable")

    async def _connection(self, host: str) -> asyncssh.SSHClientConnection:
        lock = self._locks.setdefault(host, asyncio.Lock())
        async with lock:
            await self._ensure_fresh_certificate()
            conn = self._conns.get(host)
            if conn is not None and not _closed(conn):
                return conn
            if conn is not None:
                self._drop(host)
            key = self._load_key()
            try:
                conn = await asyncio.wait_for(
                    asyncssh.connect(
                        self.bastion,
                        self.port,
                        username=host,  # login name = target name
                        client_keys=[key],
                        known_hosts=self._known_hosts,
                        host_key_alias=self._host_key_alias,
                        agent_path=None,
                        config=None,  # ignore ~/.ssh/config: everything is explicit here
                        preferred_auth="publickey",
                        password=None,
                        kbdint_auth=False,
                        keepalive_interval=30,
                    ),
                    self.connect_timeout,
                )
            except asyncssh.PermissionDenied:
                raise GatehouseError(
                    f"gatehouse did not accept our credentials for {host} (not granted, or the "
                    "certificate is expired or revoked); ask the operator"
                ) from None
            except asyncssh.HostKeyNotVerifiable:
                raise GatehouseError("gatehouse's host key did not match the pinned one; refusing to connect") from None
            except (asyncssh.Error, OSError, asyncio.TimeoutError) as e:
                raise GatehouseError(f"could not reach gatehouse ({type(e).__name__})") from None
            self._conns[host] = conn
            return conn

    def _drop(self, host: str) -> None:
        conn = self._conns.pop(host, None)
        if conn is not None:
            conn.close()

    def _load_key(self):
        if self._client_key is None:
            try:
                self._client_key = (
                    asyncssh.read_private_key(self._key_path),
                    asyncssh.read_certificate(self._cert_path),
                )
            except (OSError, asyncssh.KeyImportError) as e:
                raise GatehouseError(f"gatehouse credentials are missing or unreadable ({type(e).__name__}); "
                                     "ask the operator to log in") from None
        return self._client_key

    def certificate_expires_at(self) -> Optional[float]:
        """The certificate's valid-before as a Unix time, or None if unreadable."""
        try:
            cert = asyncssh.read_certificate(self._cert_path)
        except (OSError, asyncssh.KeyImportError):
            return None
        # asyncssh 2.24 keeps valid-before as `_valid_before` (no public property); read either.
        valid_before = getattr(cert, "valid_before", None)
        if valid_before is None:
            valid_before = getattr(cert, "_valid_before", None)
        return float(valid_before) if valid_before is not None else None

    async def _ensure_fresh_certificate(self) -> bool:
        """Runs the login command if the certificate expires within `renew_before` seconds.
        Returns True when new credentials were loaded; they are used by the next new connection
        (connections already logged in stay open)."""
        async with self._login_lock:
            expires = self.certificate_expires_at()
            if expires is not None and expires - time.time() > self.renew_before:
                return False
            if not self.login_command:
                if expires is not None and expires <= time.time():
                    raise GatehouseError("the gatehouse certificate has expired; ask the operator to log in")
                return False  # close to expiry but nothing to run: use it while it lasts
            proc = await asyncio.create_subprocess_exec(
                *self.login_command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await proc.communicate()
            if proc.returncode != 0:
                raise GatehouseError(f"renewing the gatehouse certificate failed (login exit {proc.returncode})")
            self._client_key = None
            fresh = self.certificate_expires_at()
            if fresh is None or fresh - time.time() <= 0:
                raise GatehouseError("the login command did not produce a valid certificate")
            return True


def _closed(conn: asyncssh.SSHClientConnection) -> bool:
    # asyncssh marks a connection closed once its transport is gone.
    return conn.is_closed()


def _signal_number(name: str) -> int:
    import signal

    try:
        return int(getattr(signal, "SIG" + name))
    except (AttributeError, TypeError, ValueError):
        return 0
