"""`agenthub mcp`: a Model Context Protocol server on stdio, so another agent can hand work to
AgentHub and be told when it is done.

Every tool goes through the HTTP API as the token's user (agenthub_cli.client.Client), so it has
exactly that user's permissions and leaves the same audit trail as the browser and the CLI.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from agenthub_cli.client import UNSETTLED, Client, CliError, job_path


class LineComment(BaseModel):
    """A review's comment on one line of the diff."""

    path: str = Field(description="a file the result changes")
    line: int = Field(ge=1, description="the line's number in that file")
    side: Literal["new", "old"] = Field("new", description="old: a removed line")
    body: str


# How often wait_for_job looks again (and reports progress) while the job runs.
WAIT_POLL_SECONDS = 10
T = TypeVar("T")

INSTRUCTIONS = """\
AgentHub runs coding agents on a team's git repositories in isolated sandboxes. submit_job hands
a task over and returns the job's id at once; wait_for_job waits for it (with progress), then
get_diff shows what the agent changed. A person reviews and merges the result; review_job is for
reviewers, and nobody may approve their own job."""


def build_server(client: Client) -> MCPServer:
    server: MCPServer = MCPServer("agenthub", instructions=INSTRUCTIONS, log_level="WARNING")

    def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return api(client.json, method, path, **kwargs)

    @server.tool()
    def submit_job(
        repo: str,
        agent: str,
        prompt: str,
        title: str | None = None,
        base_ref: str | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        """Submit a task to an agent on a repository (both by name). Returns at once with the
        job's `id` and `status`; the agent works in its own sandboxed checkout of `base_ref`
        (default: the repository's default branch). `model` overrides an AI agent's model."""
        body = {"repo": repo, "agent": agent, "prompt": prompt, "title": title}
        return call("POST", "/jobs", body={**body, "base_ref": base_ref, "model": model})

    @server.tool()
    def job_status(job_id: str) -> dict[str, Any]:
        """A job: its status, progress, attempts with their diff stats, and reviews."""
        return call("GET", job_path(job_id))

    @server.tool()
    async def wait_for_job(
        job_id: str, ctx: Context, timeout_seconds: float = 600
    ) -> dict[str, Any]:
        """Wait until the job needs review, is merged, made no changes, failed or was cancelled,
        reporting its progress meanwhile. Returns the job as job_status does, with `timed_out`
        true if it was still queued or running after `timeout_seconds` (call again to go on)."""
        deadline = anyio.current_time() + max(0.0, timeout_seconds)
        job = await in_thread(call, "GET", job_path(job_id))
        reported: tuple[Any, ...] | None = None
        while True:
            reported = await report(ctx, job, reported)
            left = deadline - anyio.current_time()
            if job.get("status") not in UNSETTLED or left <= 0:
                return {**job, "timed_out": job.get("status") in UNSETTLED}
            poll = max(1, min(WAIT_POLL_SECONDS, math.ceil(left)))
            job = await in_thread(api, client.wait, job_id, poll)

    @server.tool()
    def get_diff(job_id: str, attempt: int | None = None) -> str:
        """The unified diff of the job's result (default: its latest attempt), ready for
        `git apply`. Empty when the agent changed nothing."""
        params = {"attempt": attempt}
        response = api(client.request, "GET", job_path(job_id, "diff"), params=params)
        return response.content.decode("utf-8", errors="replace")

    @server.tool()
    def list_jobs(
        status: str | None = None,
        repo: str | None = None,
        submitter: str | None = None,
        page: int = 1,
    ) -> dict[str, Any]:
        """Jobs of your teams, newest first, 50 a page; optionally only those in one status
        (queued, running, needs_review, approved, merged, no_changes, findings, failed, cancelled,
        rejected, changes_requested, conflict), of one repository, or submitted by one user
        (a username, or `me` for the jobs you submitted)."""
        params = {"status": status, "repo": repo, "submitter": submitter, "page": page}
        return call("GET", "/jobs", params=params)

    @server.tool()
    def review_job(
        job_id: str,
        decision: Literal["approve", "reject", "request_changes"],
        comment: str = "",
        line_comments: list[LineComment] | None = None,
    ) -> dict[str, Any]:
        """Approve, reject or request changes on a job's result (reviewers only; not your own
        job). request_changes starts a follow-up attempt with `comment` and the line comments
        added to the task. A line comment names a file the result changes, a line number in
        it, and side "old" for a removed line ("new", the default, for the result's lines)."""
        body = {
            "decision": decision,
            "comment": comment,
            "comments": [c.model_dump() for c in line_comments or []],
        }
        return call("POST", job_path(job_id, "reviews"), body=body)

    return server


def api(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return func(*args, **kwargs)
    except CliError as exc:  # the API's own message: which field, which job, what role
        raise ToolError(exc.message) from None


async def in_thread(func: Callable[..., T], *args: Any) -> T:
    # The API client is synchronous; a waiting call must not stall the server's event loop.
    return await anyio.to_thread.run_sync(functools.partial(func, *args))


async def report(
    ctx: Context, job: dict[str, Any], last: tuple[Any, ...] | None
) -> tuple[Any, ...]:
    """A progress notification when the job's status or progress changed since the last one."""
    settled = job.get("status") not in UNSETTLED
    percent = 100 if settled else job.get("progress") or 0
    message = f"{job.get('id')} {job.get('status')}"
    if job.get("progress_message") and not settled:
        message += f": {job['progress_message']}"
    state = (percent, message)
    if state != last:
        await ctx.report_progress(percent, 100, message)
    return state


def serve(client: Client) -> None:
    build_server(client).run("stdio")
