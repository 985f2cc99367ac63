from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import UTC
from typing import Any

import pathspec
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.functional import cached_property

from egress.policy import Egress, validate_allowlist
from gateway.providers import Provider
from gateway.vault import SealedJSONField, Unopened
from jobs import checks, git_auth
from jobs.validation import (
    IMAGE_REFERENCE,
    command_problem,
    secrets_problem,
    silent_merge_problem,
)

NAME_VALIDATOR = RegexValidator(
    r"^[a-z0-9][a-z0-9._-]{0,63}$",
    "Use 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit.",
)
# 10 characters from a 32-letter alphabet: 50 bits, short enough to say aloud, not guessable.
PUBLIC_ID_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"


def new_public_id() -> str:
    return "".join(secrets.choice(PUBLIC_ID_ALPHABET) for _ in range(10))


class Team(models.Model):
    name = models.CharField(max_length=64, unique=True, validators=[NAME_VALIDATOR])
    # How many attempts of this team may run at once; the rest wait in the queue.
    concurrency_limit = models.PositiveIntegerField(
        default=2, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    MEMBER = "member"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class Membership(models.Model):
    team = models.ForeignKey(Team, models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="one_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"

    @property
    def can_review(self) -> bool:
        return self.role in (Role.REVIEWER, Role.ADMIN)


class Repository(models.Model):
    team = models.ForeignKey(Team, models.CASCADE, related_name="repositories")
    name = models.CharField(max_length=64, validators=[NAME_VALIDATOR])
    source = models.CharField(max_length=1000, help_text="Local path or clone URL it came from.")
    # Merged results are pushed here when set (a local bare path or URL).
    push_url = models.CharField(max_length=1000, blank=True)
    store_path = models.CharField(max_length=1000, help_text="AgentHub's bare copy.")
    default_branch = models.CharField(max_length=200, default="main")
    created_at = models.DateTimeField(default=timezone.now)
    # Following upstream (jobs/services/upstream.py): when the store last fetched the source,
    # why the last try failed ("" when it worked), and how often workers sync it unasked.
    last_synced_at = models.DateTimeField(null=True, blank=True)
    sync_error = models.CharField(max_length=500, blank=True)
    sync_interval = models.PositiveIntegerField(
        default=600, help_text="Seconds between syncs with the source; 0: only before jobs."
    )
    # Its environment (jobs/environments.py): a setup script run once per environment key in the
    # sandbox before the agent, with the package registries and the secrets below, its result
    # cached and reused; a maintenance script run in every attempt after it. Empty setup: what
    # the checkout holds is detected (pyproject.toml, requirements.txt, package.json).
    setup_script = models.TextField(blank=True)
    maintenance_script = models.TextField(blank=True)
    # Env vars for the setup and maintenance scripts only (never the agent), masked in logs;
    # encrypted at rest and write-only in every UI and API.
    secrets = SealedJSONField(default=dict, blank=True)
    # How the host's git fetches the source and pushes merges (jobs/git_auth.py): {"token",
    # "username"?} or {"ssh_key"}; encrypted at rest, write-only everywhere.
    credentials = SealedJSONField(default=dict, blank=True)
    # Part of the environment's key: "rebuild environment" bumps it, so the next attempt sets up
    # afresh and retention removes the old one.
    environment_generation = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="repo_name_per_team")]
        verbose_name_plural = "repositories"

    def __str__(self) -> str:
        return f"{self.team}/{self.name}"

    def clean(self) -> None:
        errors = {}
        if problem := secrets_problem(self.secrets):
            errors["secrets"] = problem
        if not isinstance(self.credentials, Unopened) and (
            problem := git_auth.problem(self.credentials)
        ):
            errors["credentials"] = problem
        for field in ("setup_script", "maintenance_script"):
            script = getattr(self, field)
            if script.strip() and (problem := command_problem(script)):
                errors[field] = problem.replace("The command", "The script")
        if errors:
            raise ValidationError(errors)


class Backend(models.TextChoices):
    DEFAULT = "", "server default"
    DOCKER = "docker"
    BWRAP = "bwrap"
    LOCAL = "local"


class PromptFormat(models.TextChoices):
    """How the agent reads its instruction, and so how a review is added to a follow-up's."""

    SCRIPT = "script", "a script (a review is added as # comment lines)"
    TEXT = "text", "text (a review is added as plain text)"


class PushStatus(models.TextChoices):
    PENDING = "pending"
    PUSHED = "pushed"
    FAILED = "failed"
    NOT_CONFIGURED = "not_configured", "kept in AgentHub, not pushed"


class OutputFormat(models.TextChoices):
    """How an agent's output is read into activity events (jobs/activity.py READERS)."""

    TEXT = "text", "plain text"
    CLAUDE_STREAM_JSON = "claude-stream-json", "Claude Code stream-json"
    CODEX_JSON = "codex-json", "Codex exec --json"
    GEMINI_STREAM_JSON = "gemini-stream-json", "Gemini CLI stream-json"
    AIDER_TEXT = "aider-text", "aider's text"
    OPENHANDS_JSON = "openhands-json", "OpenHands events"


class Agent(models.Model):
    # A null team makes the agent available to every team (the built-in presets).
    team = models.ForeignKey(Team, models.CASCADE, null=True, blank=True, related_name="agents")
    name = models.CharField(max_length=64, validators=[NAME_VALIDATOR])
    description = models.CharField(max_length=500, blank=True)
    # A bash script run inside the sandbox. The instruction is never pasted into it: it arrives as
    # $AGENTHUB_PROMPT and $AGENTHUB_PROMPT_FILE, so a prompt cannot inject shell syntax.
    command = models.TextField()
    prompt_format = models.CharField(
        max_length=8, choices=PromptFormat.choices, default=PromptFormat.SCRIPT
    )
    backend = models.CharField(max_length=16, choices=Backend.choices, blank=True, default="")
    # The docker backend's image; empty means AGENTHUB_SANDBOX_IMAGE.
    image = models.CharField(max_length=300, blank=True)
    timeout_seconds = models.PositiveIntegerField(
        default=1800, validators=[MinValueValidator(1), MaxValueValidator(24 * 3600)]
    )
    cpus = models.FloatField(
        default=1.0, validators=[MinValueValidator(0.1), MaxValueValidator(64)]
    )
    memory_mb = models.PositiveIntegerField(
        default=2048, validators=[MinValueValidator(64), MaxValueValidator(256 * 1024)]
    )
    max_processes = models.PositiveIntegerField(
        default=256, validators=[MinValueValidator(8), MaxValueValidator(65536)]
    )
    # An AI agent's model provider: its attempts get a gateway token for the team's credential
    # of that provider (gateway/); empty for agents that use no model.
    provider = models.CharField(max_length=32, choices=Provider.choices, blank=True)
    # The model it asks for (the preset's CLI gets it as $AGENTHUB_MODEL).
    model = models.CharField(max_length=200, blank=True)
    # How its output is read into activity events beside the log (jobs/activity.py).
    output_format = models.CharField(
        max_length=32,
        choices=OutputFormat.choices,
        default=OutputFormat.TEXT,
    )
    # Per attempt, what the gateway forwards at most: past either, it refuses and the attempt
    # ends `failed` with "budget exceeded", its partial work kept. Empty: no limit.
    budget_usd = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    budget_requests = models.PositiveIntegerField(null=True, blank=True)
    # What the sandbox may reach besides the model gateway, through egress/proxy.py.
    egress = models.CharField(max_length=16, choices=Egress.choices, default=Egress.NONE)
    # For `allowlist`: one `[METHODS] host[:port]` per line, `registries` for the package
    # registries (egress/policy.py).
    egress_allowlist = models.TextField(blank=True, validators=[validate_allowlist])
    required_approvals = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(10)]
    )
    # Review policy, silent merge: gitignore-style patterns, one per line ("docs/**", "*.md",
    # "!docs/api.md"). A result whose every changed path (and every renamed file's old path)
    # matches merges without review; empty: every result is reviewed.
    silent_merge = models.TextField(blank=True)
    retry_allowed = models.BooleanField(default=True, help_text="Retry once when a worker dies.")
    # Report-only agents (pytest, security-scan) never change code: their result is the log.
    report_only = models.BooleanField(default=False)
    # Env vars, masked in logs; encrypted at rest and write-only in every UI and API.
    secrets = SealedJSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="agent_name_per_team"),
            # NULLs are distinct in the constraint above, so the presets need their own.
            models.UniqueConstraint(
                fields=["name"], condition=models.Q(team=None), name="preset_agent_name"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def silent_merge_patterns(self) -> list[str]:
        return [line.strip() for line in self.silent_merge.splitlines() if line.strip()]

    def merges_silently(self, paths: list[str]) -> bool:
        """Whether the review policy lets a result touching exactly these paths merge unreviewed."""
        patterns = self.silent_merge_patterns
        if not patterns or not paths:
            return False
        spec = pathspec.GitIgnoreSpec.from_lines(patterns)
        return all(spec.match_file(path) for path in paths)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if problem := secrets_problem(self.secrets):
            errors["secrets"] = problem
        if self.image and not IMAGE_REFERENCE.fullmatch(self.image):
            errors["image"] = (
                f"{self.image!r} is not an image name: expected e.g. 'agenthub-sandbox:latest' "
                "or 'registry.example.com/team/tool:1.2' (lowercase, optional tag or digest)."
            )
        if problem := command_problem(self.command):
            errors["command"] = problem
        if problem := silent_merge_problem(self.silent_merge):
            errors["silent_merge"] = problem
        if errors:
            raise ValidationError(errors)


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    NEEDS_REVIEW = "needs_review"
    APPROVED = "approved"
    MERGED = "merged"
    NO_CHANGES = "no_changes"
    # A check reported problems (jobs/checks.py): settled, but not a green "no changes".
    FINDINGS = "findings"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    CHANGES_REQUESTED = "changes_requested"
    CONFLICT = "conflict"


class Job(models.Model):
    public_id = models.CharField(max_length=16, unique=True, default=new_public_id, editable=False)
    team = models.ForeignKey(Team, models.PROTECT, related_name="jobs")
    repository = models.ForeignKey(Repository, models.PROTECT, related_name="jobs")
    agent = models.ForeignKey(Agent, models.PROTECT, related_name="jobs")
    submitter = models.ForeignKey(settings.AUTH_USER_MODEL, models.PROTECT, related_name="jobs")
    title = models.CharField(max_length=200)
    prompt = models.TextField()
    base_ref = models.CharField(max_length=200)
    base_commit = models.CharField(max_length=64)
    # The branch a merge lands on: base_ref when it names a branch, else the default branch.
    target_branch = models.CharField(max_length=200)
    priority = models.IntegerField(
        default=0, validators=[MinValueValidator(-10), MaxValueValidator(10)]
    )
    attempts_requested = models.PositiveSmallIntegerField(default=1)
    callback_url = models.URLField(blank=True)
    # For an AI agent: the model this job asks for instead of the agent's own; empty: the agent's.
    model = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    merge_commit = models.CharField(max_length=64, blank=True)
    conflicts = models.JSONField(default=list, blank=True)
    # Whether the merge left AgentHub (jobs/services/merge.py): empty until merged, then
    # pushed, failed (retry from the page or the API) or not_configured (no push URL).
    push_status = models.CharField(max_length=16, choices=PushStatus.choices, blank=True)
    push_at = models.DateTimeField(null=True, blank=True)
    push_detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["team", "-created_at"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return self.public_id

    @cached_property
    def latest_attempt(self) -> Attempt | None:
        return self.attempts.order_by("-number").first()

    def reviews_qs(self) -> models.QuerySet[Review]:
        return Review.objects.filter(attempt__job=self).select_related("attempt", "reviewer")


class AttemptStatus(models.TextChoices):
    QUEUED = "queued"
    PREPARING = "preparing"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    LOST = "lost"


ACTIVE_ATTEMPT_STATUSES = (AttemptStatus.PREPARING, AttemptStatus.RUNNING)
FINISHED_ATTEMPT_STATUSES = (
    AttemptStatus.SUCCEEDED,
    AttemptStatus.FAILED,
    AttemptStatus.TIMED_OUT,
    AttemptStatus.CANCELLED,
    AttemptStatus.LOST,
)


class Attempt(models.Model):
    job = models.ForeignKey(Job, models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    status = models.CharField(
        max_length=16, choices=AttemptStatus.choices, default=AttemptStatus.QUEUED
    )
    branch = models.CharField(max_length=200)
    # The diff is taken against base_commit; the workspace starts at start_commit, which differs
    # only for a follow-up attempt after "request changes" (it continues the previous result).
    base_commit = models.CharField(max_length=64)
    start_commit = models.CharField(max_length=64)
    # When the store was last synced with upstream as this attempt's base was read from its
    # branch (null: its base was not a branch head, e.g. a commit, or a follow-up's result), and
    # why that sync failed, if it did (it then ran on the last synced base).
    base_synced_at = models.DateTimeField(null=True, blank=True)
    sync_note = models.CharField(max_length=500, blank=True)
    retry_of = models.ForeignKey("self", models.SET_NULL, null=True, blank=True)
    # The job's status follows its latest round: the first attempts and their retries are round
    # 1; each follow-up or re-run starts the next (see jobs.services.lifecycle).
    round = models.PositiveSmallIntegerField(default=1)
    # What this attempt was asked when it differs from the job's prompt as submitted (a
    # follow-up: the prompt plus the review), and the review it answers ($AGENTHUB_REVIEW_FILE).
    instruction = models.TextField(blank=True)
    review = models.ForeignKey(
        "Review", models.SET_NULL, null=True, blank=True, related_name="follow_ups"
    )
    # Set when handed to RQ; the dispatcher only hands out attempts up to the team's limit.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Written by the executing worker every few seconds; the reconciler marks attempts whose
    # heartbeat stopped as lost.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # Set by the gateway when the agent's budget is spent; the worker then stops the attempt.
    budget_exceeded = models.CharField(max_length=200, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    progress = models.PositiveSmallIntegerField(null=True, blank=True)
    progress_message = models.CharField(max_length=500, blank=True)
    last_seq = models.PositiveIntegerField(default=0)
    # The result: a commit on `branch` in the store, its patch and stats against base_commit.
    result_commit = models.CharField(max_length=64, blank=True)
    partial = models.BooleanField(default=False)
    diff_hash = models.CharField(max_length=64, blank=True)
    patch = models.TextField(blank=True)
    files = models.JSONField(default=list, blank=True)
    # Reproducibility card: backend, command, limits, base commit, tool versions.
    card = models.JSONField(default=dict, blank=True)
    # What the agent said it did, for the review page (an AI agent's closing message, its turns
    # and cost as its CLI counted them); empty when it says nothing.
    summary = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="attempt_number_per_job")
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]
        ordering = ["number"]

    def __str__(self) -> str:
        return f"{self.job.public_id}/{self.number}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_ATTEMPT_STATUSES

    @property
    def has_changes(self) -> bool:
        return bool(self.result_commit)

    @property
    def asked(self) -> str:
        """The instruction this attempt was given."""
        return self.instruction or self.job.prompt

    @property
    def summary_text(self) -> str:
        """A check's result in one line ("41 passed, 2 failed"), or ""."""
        return checks.describe(self.summary)

    @property
    def failure_reason(self) -> str:
        """Why it ended without succeeding (exit code, timeout, memory, setup, budget), or ""."""
        return "" if self.status == AttemptStatus.SUCCEEDED or not self.is_finished else self.reason


class Event(models.Model):
    attempt = models.ForeignKey(Attempt, models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    ts = models.DateTimeField()
    kind = models.CharField(max_length=16)
    stream = models.CharField(max_length=8, blank=True)
    text = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["attempt", "seq"], name="gap_free_seq")]
        ordering = ["attempt", "seq"]

    def __str__(self) -> str:
        return f"{self.attempt_id}#{self.seq} {self.kind}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts.isoformat(),
            "kind": self.kind,
            "stream": self.stream,
            "text": self.text,
            **({"data": self.data} if self.data else {}),
        }


class Decision(models.TextChoices):
    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_CHANGES = "request_changes"


class Review(models.Model):
    attempt = models.ForeignKey(Attempt, models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, models.PROTECT, related_name="reviews")
    decision = models.CharField(max_length=16, choices=Decision.choices)
    comment = models.TextField(blank=True)
    # The approval holds only for the result it saw.
    diff_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.reviewer} {self.decision} {self.attempt}"

    def as_document(self) -> dict[str, Any]:
        """The review as a follow-up attempt reads it from $AGENTHUB_REVIEW_FILE (JSON)."""
        return {
            "attempt": self.attempt.number,
            "reviewer": self.reviewer.get_username(),
            "decision": self.decision,
            "comment": self.comment,
            "comments": [c.as_dict() for c in self.line_comments.all()],
        }


class Side(models.TextChoices):
    NEW = "new"  # a line of the result (added or unchanged): its number in the new file
    OLD = "old"  # a removed line: its number in the base file


class LineComment(models.Model):
    """A reviewer's remark on one line of the diff, given with a review."""

    review = models.ForeignKey(Review, models.CASCADE, related_name="line_comments")
    path = models.CharField(max_length=4096)
    line = models.PositiveIntegerField()
    side = models.CharField(max_length=3, choices=Side.choices, default=Side.NEW)
    body = models.TextField()

    class Meta:
        ordering = ["path", "line", "id"]

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def where(self) -> str:
        """How the comment names its line: `path:line`, `(removed)` for a line of the base."""
        return f"{self.path}:{self.line}" + (" (removed)" if self.side == Side.OLD else "")

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "side": self.side, "body": self.body}


GENESIS_HASH = "0" * 64


class AuditEntry(models.Model):
    """An append-only record of a state change or a person's action.

    Entries form a chain: `hash` is an HMAC (AGENTHUB_AUDIT_KEY) over the previous entry's hash
    and this entry's content, and `seq` numbers them without gaps. Writers take the AuditHead row
    lock, so concurrent writers cannot fork the chain. `manage.py verify_audit` checks it; on
    PostgreSQL a trigger refuses UPDATE and DELETE of the table (migration 0004).
    """

    seq = models.PositiveBigIntegerField(unique=True)
    ts = models.DateTimeField(default=timezone.now)
    # PROTECT: a person, team or job with history cannot be deleted (deactivate a user instead).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Kept as text too, so the trail reads without joins.
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=64)
    team = models.ForeignKey(Team, models.PROTECT, null=True, blank=True, related_name="+")
    job = models.ForeignKey(Job, models.PROTECT, null=True, blank=True, related_name="audit")
    target = models.CharField(max_length=200, blank=True)
    before = models.CharField(max_length=64, blank=True)
    after = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["seq"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["ts"]), models.Index(fields=["action"])]

    def __str__(self) -> str:
        return (
            f"#{self.seq} {self.ts:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.target}"
        )

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValidationError("Audit entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ValidationError("Audit entries are append-only.")

    def compute_hash(self, prev_hash: str | None = None) -> str:
        return audit_hash(self, self.prev_hash if prev_hash is None else prev_hash)


def audit_hash(entry: Any, prev_hash: str) -> str:
    """HMAC over the previous hash and every column but the id and the hashes, canonically
    encoded. A function of plain attributes, so migrations can call it on historical models."""
    content = json.dumps(
        [
            entry.seq,
            entry.ts.astimezone(UTC).isoformat(timespec="microseconds"),
            entry.actor_id,
            entry.actor_name,
            entry.action,
            entry.team_id,
            entry.job_id,
            entry.target,
            entry.before,
            entry.after,
            entry.data,
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode()
    key = settings.AGENTHUB_AUDIT_KEY.encode()
    return hmac.new(key, prev_hash.encode() + b"\n" + content, hashlib.sha256).hexdigest()


class AuditHead(models.Model):
    """The chain's newest entry (one row). Locking it serializes writers; it also lets
    verify_audit notice entries removed from the end of the chain."""

    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"audit head #{self.seq}"


def hash_token(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    # Only the hash is stored; the key is shown once when created.
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # No expiry when null. A revoked token is kept (the audit trail names it) but never accepted.
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, user: Any, name: str, *, expires_at: Any = None) -> tuple[ApiToken, str]:
        key = "ah_" + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user, name=name, prefix=key[:10], key_hash=hash_token(key), expires_at=expires_at
        )
        return token, key

    @property
    def is_usable(self) -> bool:
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > timezone.now()
        )
