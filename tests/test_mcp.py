"""`agenthub mcp`, started by the MCP SDK's own stdio client as another agent would start it,
against a real server (live_server) with real workers running the jobs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

from jobs import services
from jobs.models import ApiToken, Attempt, AuditEntry, Job

pytestmark = pytest.mark.slow

AGENTHUB = Path(sys.executable).with_name("agenthub")  # the installed console script
TOOLS = {"submit_job", "job_status", "wait_for_job", "get_diff", "list_jobs", "review_job"}

Session = Callable[[ClientSession], Awaitable[Any]]


def with_session(url: str, token: str, tmp_path: Path, use: Session) -> Any:
    """Start `agenthub mcp` as a subprocess, open a client session to it, and run `use`."""
    params = StdioServerParameters(
        command=str(AGENTHUB),
        args=["mcp"],
        env={
            "AGENTHUB_URL": url,
            "AGENTHUB_TOKEN": token,
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        },
    )

    async def run() -> Any:
        with (tmp_path / "mcp-stderr.log").open("w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    return await use(session)

    return anyio.run(run)


def text(result: CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, TextContent))


def test_a_client_submits_waits_with_progress_and_reads_the_diff(
    live_server, alice, repo, workers, tmp_path
):
    token = ApiToken.issue(alice, "mcp")[1]
    workers.start()
    progress: list[tuple[float, float | None, str | None]] = []

    async def record(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async def use(session: ClientSession) -> dict[str, Any]:
        listed = await session.list_tools()
        submitted = await session.call_tool(
            "submit_job",
            {"repo": "demo", "agent": "shell", "prompt": "echo hi > hi.txt", "title": "Say hi"},
        )
        job_id = submitted.structured_content["id"]
        waited = await session.call_tool(
            "wait_for_job", {"job_id": job_id, "timeout_seconds": 120}, progress_callback=record
        )
        diff = await session.call_tool("get_diff", {"job_id": job_id})
        status = await session.call_tool("job_status", {"job_id": job_id})
        jobs = await session.call_tool("list_jobs", {"status": "needs_review"})
        return {
            "tools": {tool.name for tool in listed.tools},
            "submitted": submitted,
            "waited": waited,
            "diff": diff,
            "status": status,
            "jobs": jobs,
        }

    got = with_session(live_server.url, token, tmp_path, use)

    assert got["tools"] == TOOLS
    job_id = got["submitted"].structured_content["id"]
    job = Job.objects.get(public_id=job_id)
    assert (job.submitter, job.title, job.status) == (alice, "Say hi", "needs_review")
    assert AuditEntry.objects.filter(job=job, actor=alice).exists()  # acting as the token's user
    waited = got["waited"]
    assert not waited.is_error, text(waited)
    assert waited.structured_content["status"] == "needs_review"
    assert waited.structured_content["timed_out"] is False
    assert progress, "wait_for_job sent no progress notification"
    assert progress[-1] == (100, 100, f"{job_id} needs_review")
    assert all(total == 100 and message.startswith(job_id) for _, total, message in progress)
    assert text(got["diff"]) == Attempt.objects.get(job=job).patch
    assert "+++ b/hi.txt" in text(got["diff"])
    assert got["status"].structured_content["attempts"][0]["status"] == "succeeded"
    assert [j["id"] for j in got["jobs"].structured_content["jobs"]] == [job_id]


def test_wait_for_job_reports_a_job_still_running_as_timed_out(live_server, alice, repo, tmp_path):
    token = ApiToken.issue(alice, "mcp")[1]

    async def use(session: ClientSession) -> CallToolResult:
        submitted = await session.call_tool(
            "submit_job", {"repo": "demo", "agent": "shell", "prompt": "true"}
        )
        job_id = submitted.structured_content["id"]
        return await session.call_tool("wait_for_job", {"job_id": job_id, "timeout_seconds": 1})

    waited = with_session(live_server.url, token, tmp_path, use)  # no worker: it stays queued

    assert not waited.is_error, text(waited)
    assert waited.structured_content["status"] == "queued"
    assert waited.structured_content["timed_out"] is True


def test_tools_have_the_users_permissions_and_the_apis_messages(
    live_server, alice, carol, repo, workers, tmp_path
):
    token = ApiToken.issue(alice, "mcp")[1]

    async def use(session: ClientSession) -> dict[str, CallToolResult]:
        submitted = await session.call_tool(
            "submit_job", {"repo": "demo", "agent": "shell", "prompt": "echo x > x.txt"}
        )
        job_id = submitted.structured_content["id"]
        await session.call_tool("wait_for_job", {"job_id": job_id, "timeout_seconds": 120})
        return {
            "own": await session.call_tool("review_job", {"job_id": job_id, "decision": "approve"}),
            "unknown": await session.call_tool("job_status", {"job_id": "nope"}),
            "bad_agent": await session.call_tool(
                "submit_job", {"repo": "demo", "agent": "nope", "prompt": "true"}
            ),
        }

    workers.start()
    got = with_session(live_server.url, token, tmp_path, use)

    assert got["own"].is_error
    assert text(got["own"]).endswith("You submitted this job; someone else has to review it.")
    assert Job.objects.get().status == "needs_review"
    assert got["unknown"].is_error
    assert text(got["unknown"]).endswith("No job 'nope' in your teams.")
    assert got["bad_agent"].is_error and "(field: agent)" in text(got["bad_agent"])


def test_list_jobs_filters_by_submitter_with_me_for_the_caller(
    live_server, alice, bob, repo, tmp_path
):
    alices = services.submit_job(alice, repo="demo", agent="shell", prompt="true").public_id
    bobs = services.submit_job(bob, repo="demo", agent="shell", prompt="true").public_id
    token = ApiToken.issue(alice, "mcp")[1]

    async def use(session: ClientSession) -> dict[str, Any]:
        listed = await session.list_tools()
        return {
            "tool": next(tool for tool in listed.tools if tool.name == "list_jobs"),
            "mine": await session.call_tool("list_jobs", {"submitter": "me"}),
            "bobs": await session.call_tool("list_jobs", {"submitter": "bob"}),
            "unknown": await session.call_tool("list_jobs", {"submitter": "nobody"}),
        }

    got = with_session(live_server.url, token, tmp_path, use)

    assert "submitter" in got["tool"].input_schema["properties"]
    assert "`me`" in got["tool"].description
    assert [j["id"] for j in got["mine"].structured_content["jobs"]] == [alices]
    assert [j["id"] for j in got["bobs"].structured_content["jobs"]] == [bobs]
    assert got["unknown"].is_error
    assert "no user 'nobody'" in text(got["unknown"])
    assert "(field: submitter)" in text(got["unknown"])


def test_review_job_approves_as_the_reviewer(live_server, alice, bob, repo, workers, tmp_path):
    job = services.submit_job(alice, repo="demo", agent="shell", prompt="echo x > x.txt")
    workers.burst()
    token = ApiToken.issue(bob, "mcp")[1]

    async def use(session: ClientSession) -> CallToolResult:
        remark = {"path": "x.txt", "line": 1, "body": "a better name?"}
        return await session.call_tool(
            "review_job",
            {
                "job_id": job.public_id,
                "decision": "approve",
                "comment": "fine",
                "line_comments": [remark],
            },
        )

    reviewed = with_session(live_server.url, token, tmp_path, use)

    assert not reviewed.is_error, text(reviewed)
    assert reviewed.structured_content["status"] == "approved"
    review = job.reviews_qs().get()
    assert review.reviewer == bob
    assert [c.as_dict() for c in review.line_comments.all()] == [
        {"path": "x.txt", "line": 1, "side": "new", "body": "a better name?"}
    ]


def test_the_server_refuses_to_start_without_a_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AGENTHUB_TOKEN"}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    done = subprocess.run([AGENTHUB, "mcp"], env=env, capture_output=True, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert done.stdout == b""
    assert b"`agenthub mcp` acts as a user: run `agenthub login` or set AGENTHUB_TOKEN" in (
        done.stderr
    )
