"""The shapes of /api/v1/: request bodies are validated against them and responses are checked
against them, and the OpenAPI document at /api/v1/openapi.json is generated from them.

The response shapes mirror jobs/serialize.py (shared with the realtime messages);
tests/test_openapi.py fails when the two drift apart."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import WithJsonSchema

from jobs.models import AttemptStatus, Decision, JobStatus, Side
from jobs.services import MAX_ATTEMPTS

# Numbers and switches in bodies are strict: "3" or true is not a number, "yes" not a switch.
# Timestamps are ISO 8601 strings, written by jobs/serialize.py exactly as the realtime messages.
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class Push(Schema):
    status: Literal["pending", "pushed", "failed", "not_configured"]
    at: Timestamp | None
    detail: str = Field(description="Where it went, or why it did not")


class Error(Schema):
    error: str = Field(description="A short code: invalid, unauthorized, not_found, …")
    detail: str = Field(description="What was wrong, in words a person can act on")
    field: str | None = Field(None, description="The input that was wrong, for 400")
    conflicts: list[str] | None = Field(None, description="Conflicting files, for a 409 merge")


class SubmitIn(Schema):
    repo: str = Field(description="The repository's name in one of your teams")
    agent: str = Field(description="The agent's name")
    prompt: str = Field(description="The instruction; at most AGENTHUB_MAX_PROMPT_BYTES (413)")
    base_ref: str | None = Field(None, description="Branch, tag or commit; the default branch")
    title: str | None = None
    attempts: int = Field(1, ge=1, le=MAX_ATTEMPTS, strict=True)
    priority: int = Field(0, ge=-10, le=10, strict=True)
    callback_url: str = Field("", description="POSTed to when the job needs review or ends")
    model: str = Field(
        "", max_length=200, description="For an AI agent: the model to ask for, not its own"
    )


class Accepted(Schema):
    id: str
    status: JobStatus
    url: str
    callback_secret: str | None = Field(
        None,
        description="Signs this job's callbacks (X-AgentHub-Signature); shown only here, "
        "when a callback_url was given",
    )


class DiffStats(Schema):
    files: int
    added: int
    deleted: int


class Usage(Schema):
    input_tokens: int
    output_tokens: int
    cache_tokens: int
    cost_usd: float = Field(description="At the price table's prices (gateway/providers.py)")
    requests: int = Field(description="Model requests the gateway forwarded for the attempt")


class Environment(Schema):
    key: str = Field(description="What it was made from: the script, image, manifests' hashes")
    reused: bool = Field(description="False when this attempt set it up")
    setup_seconds: float | None = Field(description="How long the setup took; null when reused")
    path: str = Field(description="Where it is inside the sandbox (its virtualenv)")
    detected: str | None = Field(
        None, description="What the setup was detected from when the repository sets no script"
    )


class AttemptOut(Schema):
    number: int
    status: AttemptStatus
    branch: str
    base_commit: str
    base_synced_at: Timestamp | None = Field(
        description="When the store was synced with upstream as the base was read from its "
        "branch; null when the base was not a branch head (a commit, a follow-up's result)"
    )
    sync_note: str = Field(description="Why that sync failed, if it did: the base is older")
    progress: int | None
    progress_message: str
    exit_code: int | None
    reason: str
    partial: bool
    result_commit: str | None
    diff_hash: str | None
    diff_stats: DiffStats
    files: list[dict[str, Any]] = Field(description="Per file: path, status, added, deleted")
    retry_of: int | None
    instruction: str | None = Field(
        None, description="What this attempt was asked, when not the prompt as submitted"
    )
    created_at: Timestamp | None
    started_at: Timestamp | None
    finished_at: Timestamp | None
    last_seq: int
    card: dict[str, Any] = Field(description="The reproducibility card")
    environment: Environment | None = Field(
        None, description="The repository's environment it ran with; null without one"
    )
    usage: Usage = Field(description="What the attempt's model requests used, summed")
    summary: dict[str, Any] = Field(
        description="What the agent said it did: an AI agent's closing message, turns and cost; "
        "a check's result (jobs/checks.py): `tests` {passed, failed, errors, skipped, failing}, "
        "`findings` {total, by_severity, by_confidence, top}, `fixes` {fixed, remaining}"
    )


class RepositoryOut(Schema):
    name: str
    team: str
    source: str = Field(description="Where it came from, credentials redacted")
    push_url: str = Field(description="Where merges are pushed, credentials redacted; empty: none")
    default_branch: str
    sync_interval: int = Field(
        description="Seconds between syncs with the source; 0: only before jobs"
    )
    last_synced_at: Timestamp | None
    sync_error: str
    setup_script: str = Field(
        description="Run once per environment before the agent (empty: detected from the "
        "checkout's pyproject.toml, requirements*.txt or package.json)"
    )
    maintenance_script: str = Field(description="Run in every attempt before the agent")
    secrets: list[str] = Field(description="The names of the setup's secrets (write-only values)")
    credentials: str | None = Field(
        description="Which fetch and push credentials it has (token or ssh_key; write-only: "
        "PATCH {credentials: {token, username?} | {ssh_key} | {}}); null: none"
    )
    environment_generation: int = Field(
        description="Bumped by a rebuild: part of the environment's key"
    )
    environment_path: str = Field(description="Where the environment is inside the sandbox")


class Reproduced(Schema):
    id: str
    attempt: int = Field(description="The new attempt's number")
    reproduces: int = Field(description="The attempt it runs again")
    unavailable: list[str] = Field(
        description="What of the original can no longer be had, in words (an image no longer "
        "on the engine, a removed environment, host tools as they are now, a model asked again)"
    )


class Synced(Schema):
    repo: str
    synced_at: Timestamp
    moved: dict[str, str] = Field(description="Branches moved to upstream's head: their commits")
    kept: list[str] = Field(
        description="Branches holding merges not yet upstream: left as they are"
    )


class LineCommentIn(Schema):
    path: str = Field(description="A file the result changes (a renamed file's old path too)")
    line: int = Field(strict=True, ge=1, description="The line's number in that file")
    side: Side = Field(
        Side.NEW, description="new: a line of the result (added or kept); old: a removed line"
    )
    body: str = Field(min_length=1, max_length=10_000)


class LineCommentOut(Schema):
    path: str
    line: int
    side: Side
    body: str


class ReviewOut(Schema):
    attempt: int
    reviewer: str
    decision: Decision
    comment: str
    diff_hash: str
    created_at: Timestamp | None
    comments: list[LineCommentOut]


class JobSummary(Schema):
    id: str
    url: str
    status: JobStatus
    title: str
    team: str
    repo: str
    agent: str
    submitter: str
    base_ref: str
    base_commit: str
    priority: int
    progress: int | None
    progress_message: str
    merge_commit: str | None
    conflicts: list[str]
    push: Push | None = Field(
        description="Whether the merge left AgentHub (null until merged); pushed, failed or "
        "not_configured (kept in AgentHub, not pushed)"
    )
    summary: dict[str, Any] = Field(
        description="The latest attempt's summary (see the attempt's): a check's `tests`, "
        "`findings` or `fixes`, an AI agent's closing message"
    )
    summary_text: str = Field(description="That summary in one line, e.g. '41 passed, 2 failed'")
    reason: str = Field(
        description="Why the latest attempt did not succeed (exit code, timeout, out of memory, "
        "environment setup, budget); empty when it did"
    )
    created_at: Timestamp | None
    updated_at: Timestamp | None
    finished_at: Timestamp | None


class JobOut(JobSummary):
    prompt: str
    attempts: list[AttemptOut]
    reviews: list[ReviewOut]


class WaitOut(JobOut):
    timed_out: bool = Field(description="True when the timeout passed before the job settled")


class JobPage(Schema):
    jobs: list[JobSummary]
    page: int
    pages: int
    count: int


class EventOut(Schema):
    seq: int
    ts: Timestamp
    kind: str = Field(description="log, progress, notice, warning, error, group, endgroup, …")
    stream: str
    text: str
    data: dict[str, Any] | None = Field(None, description="Only present when not empty")


class EventsOut(Schema):
    attempt: int
    status: AttemptStatus
    last_seq: int
    events: list[EventOut]


class ReviewIn(Schema):
    decision: Decision
    comment: str = ""
    attempt: int | None = Field(
        None, strict=True, description="The attempt reviewed; the latest by default"
    )
    comments: list[LineCommentIn] = Field(
        [],
        max_length=200,
        description="Comments on lines of the diff; with request_changes they join the "
        "overall comment in the follow-up attempt's instruction",
    )


class ReviewCreated(Schema):
    job: str
    status: JobStatus
    decision: Decision
    attempt: int
    diff_hash: str
    follow_up: int | None = Field(
        None, description="The attempt request_changes started, asked the prompt plus the review"
    )


class MergeIn(Schema):
    attempt: int | None = Field(None, strict=True, description="The attempt to merge")


class Merged(Schema):
    commit: str
    status: JobStatus
    push: Push | None


class Cancelled(Schema):
    id: str
    status: JobStatus


class RerunIn(Schema):
    pin_image: bool = Field(
        False, strict=True, description="Run in the image the latest attempt used"
    )
    instruction: str = Field(
        "", description="What this round is asked instead of the submitted instruction"
    )


class Rerun(Schema):
    id: str
    status: JobStatus
    attempt: int


class TokenIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    expires_in_days: int | None = Field(None, ge=1, le=3650, strict=True)
    expires_at: datetime | None = Field(None, description="Instead of expires_in_days")


class TokenOut(Schema):
    id: int
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it")
    created_at: Timestamp
    last_used_at: Timestamp | None
    expires_at: Timestamp | None
    revoked_at: Timestamp | None


class TokenCreated(TokenOut):
    key: str = Field(description="The secret; shown only in this response")


class AgentOut(Schema):
    name: str
    preset: bool = Field(
        description="A built-in preset (every team has it) rather than the team's own"
    )
    description: str
    command: str = Field(description="The bash script run in the sandbox")
    provider: str = Field(
        description="The model provider whose team credential it uses; empty: none"
    )
    model: str
    output_format: str = Field(description="How its output is read into activity events")
    backend: str
    image: str
    timeout_seconds: int
    cpus: float
    memory_mb: int
    max_processes: int
    egress: str = Field(description="none, allowlist or open")
    egress_allowlist: str
    budget_usd: float | None = Field(description="Per attempt; null: no limit")
    budget_requests: int | None = Field(description="Model requests per attempt; null: no limit")
    required_approvals: int
    silent_merge: str
    retry_allowed: bool
    report_only: bool
    secrets: list[str] = Field(description="The names of its secrets; the values are write-only")


class AgentList(Schema):
    agents: list[AgentOut]
