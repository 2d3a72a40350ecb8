"""An AutoGen ops agent whose only way onto a host is gatehouse.

    gatehouse demo --dir /tmp/gh &                      # in another terminal
    python agent.py --dir /tmp/gh                        # offline: a scripted model (no API key needed)
    OPENAI_API_KEY=... python agent.py --dir /tmp/gh     # a real model (needs autogen-ext[openai])

The held step waits for a reviewer; approve it from another terminal with the command the agent
prints, e.g. `ssh -F /tmp/gh/ssh_config console approve ID`.

Configuration: --dir / GATEHOUSE_DEMO_DIR (the `gatehouse demo --dir` directory: its ssh_config names
the key, the certificate and known_hosts), --host / GATEHOUSE_HOST (default `demo`), --task, and for a
real model OPENAI_API_KEY and OPENAI_MODEL (default gpt-4o-mini).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TaskResult
from autogen_agentchat.ui import Console
from autogen_core import EVENT_LOGGER_NAME, FunctionCall
from autogen_core.models import CreateResult, ModelFamily, ModelInfo, RequestUsage
from autogen_ext.models.replay import ReplayChatCompletionClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gatehouse_autogen import GatehouseSSH  # noqa: E402

SYSTEM_MESSAGE = (
    "You are an operations engineer. You reach hosts only through the run_command tool, which goes "
    "through the gatehouse SSH bastion. gatehouse may block a command by policy: never retry a blocked "
    "command or a variant of it, choose another approach. It may hold a command for a human reviewer: "
    "that is normal, wait for the result. When done, report what you did and what gatehouse decided."
)

TASK = (
    "The web server on host {host} is low on disk space. Check disk usage, clean up the old logs under "
    "/var/log, restart the web service, and report."
)


def state_dir(demo_dir: Path) -> Path:
    """Where the scripted plan's commands leave their marker files (inside the demo directory)."""
    d = demo_dir / "autogen-state"
    d.mkdir(parents=True, exist_ok=True)
    # The target account may not be the one running this script (the demo's --target-user):
    # let it leave its markers here.
    d.chmod(0o1777)
    return d


def scripted_plan(host: str, state: Path) -> list:
    """The offline model's turns, one per model call.

    The demo target is this very machine (the demo sshd logs in as the current user, root in CI), so
    every command here is harmless when it really runs:

    * the log clean-up is `touch .../cleanup-started; rm -rf /var/log`. gatehouse denies the whole
      line (rule rm-recursive-root) before anything reaches the host, so the marker must never exist:
      that is how the test proves nothing ran. Do not weaken this line or the policy.
    * "restart the web service" is stood in for by a python one-liner that appends "x" to a marker
      file. The default policy holds inline interpreter code for a reviewer exactly as it holds
      `systemctl restart nginx`, but unlike a real restart this succeeds on any machine and changes
      nothing else, and the marker shows that it ran once, and only after approval.
    """

    def call(n: int, command: str, thought: str) -> CreateResult:
        return CreateResult(
            finish_reason="function_calls",
            content=[
                FunctionCall(
                    id=f"call_{n}",
                    name="run_command",
                    arguments=json.dumps({"host": host, "command": command}),
                )
            ],
            usage=RequestUsage(prompt_tokens=0, completion_tokens=0),
            cached=False,
            thought=thought,
        )

    restart = f"python3 -c \"open('{state}/web-restarted','a').write('x')\""
    return [
        call(1, "df -h /", "First, check how full the disks are."),
        call(
            2,
            f"touch {state}/cleanup-started; rm -rf /var/log",
            "The root filesystem is the one to free. Mark the clean-up as started and remove the old logs.",
        ),
        call(
            3,
            restart,
            "gatehouse blocked the log deletion by policy, so I will not retry it; log clean-up needs "
            "a human-approved approach (e.g. logrotate). Next, restart the web service "
            "(in this demo, a stand-in command that records the restart).",
        ),
        "Report (offline scripted model: this text is fixed; the tool results above are real):\n"
        "1. Disk usage checked with `df -h /` (allowed by gatehouse, ran on the host).\n"
        "2. Deleting /var/log was blocked by gatehouse rule rm-recursive-root (recursive deletion of a "
        "system directory). I did not retry it; please rotate or prune logs with logrotate instead.\n"
        "3. The web service restart was held for approval, a reviewer approved it, and it ran once "
        "(exit status 0).\n"
        "TERMINATE",
    ]


def model_client(host: str, state: Path):
    """A real model when OPENAI_API_KEY is set, else the scripted offline one."""
    if os.environ.get("OPENAI_API_KEY"):
        from autogen_ext.models.openai import OpenAIChatCompletionClient  # needs autogen-ext[openai]

        return OpenAIChatCompletionClient(model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"))
    # The replay client warns on every call that it counts tokens of text only; that is expected here.
    logging.getLogger(EVENT_LOGGER_NAME).setLevel(logging.ERROR)
    return ReplayChatCompletionClient(
        scripted_plan(host, state),
        model_info=ModelInfo(
            vision=False,
            function_calling=True,
            json_output=False,
            family=ModelFamily.UNKNOWN,
            structured_output=False,
        ),
    )


def build_ssh(demo_dir: Path, host: str, **kwargs) -> GatehouseSSH:
    """The tool's SSH side from the demo's ssh_config. With `gatehouse login` credentials, construct
    GatehouseSSH(bastion, port, key=..., known_hosts=..., login_command=["gatehouse", "login"])."""
    return GatehouseSSH.from_ssh_config(demo_dir / "ssh_config", host, hosts=[host], **kwargs)


def print_hold(demo_dir: Path):
    def on_hold(host: str, command: str, request_id: str, rule: str, reason: str) -> None:
        print(
            f"\n*** gatehouse held `{command}` on {host} (rule {rule}: {reason}).\n"
            f"*** A reviewer approves it with: ssh -F {demo_dir}/ssh_config console approve {request_id}\n",
            file=sys.stderr,
            flush=True,
        )

    return on_hold


async def run_agent(
    demo_dir: Path,
    host: str = "demo",
    task: Optional[str] = None,
    client=None,
    console: bool = True,
    on_hold=None,
    **ssh_options,
) -> TaskResult:
    """Runs the agent once; returns AutoGen's TaskResult (all messages, in order).
    `ssh_options` go to GatehouseSSH (e.g. command_timeout, approval="return")."""
    demo_dir = Path(demo_dir)
    client = client or model_client(host, state_dir(demo_dir))
    async with build_ssh(demo_dir, host, on_hold=on_hold or print_hold(demo_dir), **ssh_options) as ssh:
        agent = AssistantAgent(
            "ops",
            model_client=client,
            tools=[ssh.tool()],
            system_message=SYSTEM_MESSAGE,
            max_tool_iterations=10,
        )
        stream = agent.run_stream(task=task or TASK.format(host=host))
        if console:
            return await Console(stream)
        result = None
        async for item in stream:
            if isinstance(item, TaskResult):
                result = item
        return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=os.environ.get("GATEHOUSE_DEMO_DIR"), help="gatehouse demo --dir DIR")
    ap.add_argument("--host", default=os.environ.get("GATEHOUSE_HOST", "demo"))
    ap.add_argument("--task", default=None)
    args = ap.parse_args()
    if not args.dir:
        ap.error("--dir (or GATEHOUSE_DEMO_DIR) is required: the directory `gatehouse demo --dir` wrote")
    asyncio.run(run_agent(Path(args.dir), args.host, args.task))


if __name__ == "__main__":
    main()
