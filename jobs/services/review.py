"""A reviewer's decision on one attempt's result, bound to its diff hash: approve, reject, or
request changes, which continues the result on a follow-up attempt asked the original
instruction plus the review (never run as code)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from jobs import access
from jobs.errors import BadInput, Conflict, Forbidden, NotFound
from jobs.models import (
    Attempt,
    Decision,
    Job,
    JobStatus,
    LineComment,
    PromptFormat,
    Review,
    Side,
)
from jobs.services.announce import announce
from jobs.services.audit import audit
from jobs.services.dispatch import dispatch_on_commit
from jobs.services.lifecycle import new_attempt, refresh_job
from jobs.services.results import approvals, result_attempt

MAX_LINE_COMMENTS = 200
MAX_COMMENT_CHARS = 10_000
REVIEWABLE = (JobStatus.NEEDS_REVIEW, JobStatus.APPROVED, JobStatus.CONFLICT)


def review_job(
    user: Any,
    job: Job,
    decision: str,
    *,
    comment: str = "",
    attempt: int | None = None,
    line_comments: list[dict[str, Any]] | None = None,
) -> Review:
    """A reviewer's decision on an attempt's result, with an overall comment and comments on
    lines of its diff ({path, line, side: new|old, body}); with request_changes both go into the
    follow-up attempt's instruction and its $AGENTHUB_REVIEW_FILE."""
    if decision not in Decision.values:
        raise BadInput(f"decision must be one of {', '.join(Decision.values)}.", field="decision")
    try:
        if job.submitter_id == user.pk:
            raise Forbidden("You submitted this job; someone else has to review it.")
        access.require_reviewer(user, job)
    except (Forbidden, NotFound) as exc:
        audit(user, "review.refused", job=job, decision=decision, reason=exc.detail)
        raise
    with transaction.atomic():
        job = Job.objects.select_for_update().select_related("agent").get(pk=job.pk)
        if job.status not in REVIEWABLE:
            raise Conflict(f"Job {job.public_id} is {job.status}, not waiting for review.")
        target = result_attempt(job, attempt)
        if decision == Decision.APPROVE and has_approved(user, target):
            raise Conflict(
                f"You approved attempt {target.number} of job {job.public_id} already; "
                "an approval counts once."
            )
        remarks = _line_comments(target, line_comments or [])
        review = Review.objects.create(
            attempt=target,
            reviewer=user,
            decision=decision,
            comment=comment,
            diff_hash=target.diff_hash,
        )
        for remark in remarks:
            remark.review = review
        LineComment.objects.bulk_create(remarks)
        before = job.status
        job.status = _status_after_review(job, target, decision)
        job.updated_at = timezone.now()
        job.save(update_fields=["status", "updated_at"])
        audit(
            user,
            f"review.{decision}",
            job=job,
            target=str(target),
            before=before,
            after=job.status,
            diff_hash=target.diff_hash,
            comment=comment,
            line_comments=[r.as_dict() for r in remarks],
        )
        if decision == Decision.REQUEST_CHANGES:
            _follow_up(job, target, review)
            refresh_job(job)  # back to queued: the follow-up attempt waits for a worker
        announce(job, before)
    return review


def has_approved(user: Any, attempt: Attempt) -> bool:
    """Whether `user` approved this attempt's current diff."""
    return Review.objects.filter(
        attempt=attempt, reviewer=user, decision=Decision.APPROVE, diff_hash=attempt.diff_hash
    ).exists()


def _status_after_review(job: Job, attempt: Attempt, decision: str) -> str:
    if decision == Decision.REJECT:
        return JobStatus.REJECTED
    if decision == Decision.REQUEST_CHANGES:
        return JobStatus.CHANGES_REQUESTED
    if approvals(attempt) >= job.agent.required_approvals:
        return JobStatus.APPROVED
    return JobStatus.NEEDS_REVIEW


def _line_comments(target: Attempt, raw: list[dict[str, Any]]) -> list[LineComment]:
    """The review's line comments, checked against the result they are about (unsaved)."""
    if len(raw) > MAX_LINE_COMMENTS:
        raise BadInput(f"At most {MAX_LINE_COMMENTS} line comments per review.", field="comments")
    paths = {p for f in target.files for p in (f["path"], f.get("old_path")) if p}
    found = []
    for number, item in enumerate(raw):
        where = f"comments[{number}]"
        path, line, side = item.get("path"), item.get("line"), item.get("side") or Side.NEW
        body = str(item.get("body") or "").strip()
        if path not in paths:
            raise BadInput(
                f"{where}.path: {path!r} is not a file attempt {target.number} changes.",
                field="comments",
            )
        if isinstance(line, bool) or not isinstance(line, int) or not 1 <= line <= 10_000_000:
            raise BadInput(f"{where}.line: expected a line number, not {line!r}.", field="comments")
        if side not in Side.values:
            raise BadInput(f"{where}.side: expected new or old, not {side!r}.", field="comments")
        if not body or len(body) > MAX_COMMENT_CHARS:
            raise BadInput(
                f"{where}.body: write 1-{MAX_COMMENT_CHARS} characters.", field="comments"
            )
        found.append(LineComment(path=str(path), line=line, side=side, body=body))
    return found


def _follow_up(job: Job, attempt: Attempt, review: Review) -> None:
    """Continue the reviewed result on a new attempt. The job's prompt stays as submitted; the
    attempt is asked that prompt plus the review, and gets the review as a file too."""
    instruction = follow_up_instruction(
        job.prompt,
        review,
        list(review.line_comments.all()),
        as_script=job.agent.prompt_format == PromptFormat.SCRIPT,
    )
    new_attempt(
        job, attempt.base_commit, attempt.result_commit, review=review, instruction=instruction
    )
    dispatch_on_commit(job.team_id)


def follow_up_instruction(
    prompt: str, review: Review, remarks: list[LineComment], *, as_script: bool
) -> str:
    """The prompt followed by the review. For a script agent (`shell`) every line of the review
    is a `#` comment, so a reviewer's words can never run; an AI agent reads it as text."""
    lines = [f"Changes requested by {review.reviewer.get_username()} on attempt "]
    lines[0] += f"{review.attempt.number}:"
    lines.extend(review.comment.strip().splitlines())
    for remark in remarks:
        text = remark.body.splitlines() or [""]
        lines.append(f"{remark.where}: {text[0]}")
        lines.extend(f"  {more}" for more in text[1:])
    if as_script:
        lines = [f"# {line}".rstrip() for line in lines]
    return f"{prompt.rstrip()}\n\n" + "\n".join(lines) + "\n"
