"""An attempt's life (queued → preparing → running → ended) and the job status derived from it,
plus the two person's verbs that start or stop attempts: cancel and re-run.

A job's status follows its latest round of attempts: the first round is the attempts it was
submitted with (and their retries); each follow-up or re-run starts a new round, so a failed
follow-up shows as failed while the earlier result stays reachable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from jobs import access, checks, events, workspace
from jobs.errors import BadInput, Conflict, Forbidden
from jobs.models import (
    ACTIVE_ATTEMPT_STATUSES,
    Attempt,
    AttemptStatus,
    AuditEntry,
    Job,
    JobStatus,
    Review,
)
from jobs.services.announce import announce, publish
from jobs.services.audit import append, audit, audit_entry
from jobs.services.dispatch import dispatch_on_commit
from jobs.services.merge import merge_silently
from jobs.services.repositories import resolve_ref
from jobs.validation import check_instruction_size

# Job states a person decided; a finishing attempt does not overwrite them.
TERMINAL_JOB_STATUSES = (JobStatus.MERGED,)
# Kept when attempts of the same round end later (a person decided on one result already).
DECIDED_JOB_STATUSES = (JobStatus.APPROVED, JobStatus.REJECTED, JobStatus.CONFLICT)


def queued_attempts(jobs: list[Job]) -> list[Attempt]:
    """New jobs' first round: each job's `attempts_requested` attempts on its base commit, each
    with its first event, written in two inserts whatever the number of jobs (the submit path's
    cost)."""
    attempts = Attempt.objects.bulk_create(
        _attempt(job, number, job.base_commit, job.base_commit, last_seq=1)
        for job in jobs
        for number in range(1, job.attempts_requested + 1)
    )
    events.store_first_events(attempts, _queued())
    return attempts


def new_attempt(
    job: Job,
    base: str,
    start: str,
    *,
    retry_of: Attempt | None = None,
    review: Review | None = None,
    instruction: str = "",
) -> Attempt:
    """One more attempt of an existing job: a retry stays in its round, anything else starts the
    next one. Called under the job's row lock."""
    last = job.attempts.aggregate(number=Max("number"), round=Max("round"))
    attempt = _attempt(
        job,
        (last["number"] or 0) + 1,
        base,
        start,
        round=retry_of.round if retry_of else (last["round"] or 0) + 1,
        retry_of=retry_of,
        review=review,
        instruction=instruction,
    )
    attempt.save()
    events.append_events(attempt.pk, [_queued()])
    return attempt


def _attempt(job: Job, number: int, base: str, start: str, **fields: Any) -> Attempt:
    return Attempt(
        job=job,
        number=number,
        branch=f"agenthub/{job.public_id}/{number}",
        base_commit=base,
        start_commit=start,
        **fields,
    )


def _queued() -> events.Draft:
    return events.Draft("status", "queued", data={"status": "queued"})


def claim_attempt(attempt_id: int, worker: str) -> bool:
    """Take the attempt for this worker. A duplicate delivery finds it taken and does nothing."""
    now = timezone.now()
    with transaction.atomic():
        claimed = Attempt.objects.filter(pk=attempt_id, status=AttemptStatus.QUEUED).update(
            status=AttemptStatus.PREPARING,
            worker=worker,
            started_at=now,
            heartbeat_at=now,
            dispatched_at=now,
        )
        if claimed != 1:
            return False
        _transition(attempt_id, AttemptStatus.QUEUED, AttemptStatus.PREPARING, worker=worker)
    return True


def mark_running(attempt_id: int, card: dict[str, Any]) -> None:
    with transaction.atomic():
        Attempt.objects.filter(pk=attempt_id, status=AttemptStatus.PREPARING).update(
            status=AttemptStatus.RUNNING, card=card, heartbeat_at=timezone.now()
        )
        _transition(attempt_id, AttemptStatus.PREPARING, AttemptStatus.RUNNING)


def heartbeat(attempt_id: int) -> None:
    Attempt.objects.filter(pk=attempt_id, status__in=ACTIVE_ATTEMPT_STATUSES).update(
        heartbeat_at=timezone.now()
    )


def record_progress(attempt_id: int, percent: int, message: str) -> None:
    updated = Attempt.objects.filter(pk=attempt_id).update(
        progress=percent, progress_message=message[:500]
    )
    if updated:
        attempt = Attempt.objects.select_related(
            "job__team", "job__repository", "job__agent", "job__submitter"
        ).get(pk=attempt_id)
        publish(attempt.job, attempt)


def finish_attempt(
    attempt_id: int,
    status: str,
    *,
    exit_code: int | None = None,
    reason: str = "",
    result: workspace.Diff | None = None,
    result_commit: str = "",
    summary: dict[str, Any] | None = None,
) -> Attempt | None:
    """End a running attempt; returns None when it had already ended (e.g. marked lost)."""
    now = timezone.now()
    with transaction.atomic():
        attempt = (
            Attempt.objects.select_for_update().select_related("job__agent").get(pk=attempt_id)
        )
        if attempt.is_finished:
            return None
        before = attempt.status
        attempt.status = status
        attempt.exit_code = exit_code
        attempt.reason = reason[:500]
        attempt.finished_at = now
        attempt.summary = summary or {}
        if result is not None and not attempt.job.agent.report_only:
            attempt.result_commit = result_commit
            attempt.patch = result.patch
            attempt.diff_hash = result.hash
            attempt.files = [_file_dict(f) for f in result.files]
            attempt.partial = status != AttemptStatus.SUCCEEDED
        attempt.save()
        _transition(
            attempt_id, before, status, reason=reason, exit_code=exit_code, partial=attempt.partial
        )
        dispatch_on_commit(attempt.job.team_id)
    return attempt


def _file_dict(stat: workspace.FileStat) -> dict[str, Any]:
    return {
        "path": stat.path,
        "old_path": stat.old_path,
        "status": stat.status,
        "added": stat.added,
        "deleted": stat.deleted,
        "binary": stat.binary,
    }


def _transition(attempt_id: int, before: str, after: str, **data: Any) -> None:
    """The attempt's status event, and its audit entry chained with the job's, if the job's
    status changes too: one move of the chain's head per transition."""
    text = after if not data.get("reason") else f"{after}: {data['reason']}"
    draft = events.Draft("status", text, data={"status": after, **data})
    [event] = events.append_events(attempt_id, [draft])
    job = Job.objects.select_for_update().select_related("team").get(pk=event.attempt.job_id)
    entry = audit_entry(
        "system",
        f"attempt.{after}",
        job=job,
        target=str(event.attempt),
        before=before,
        after=after,
        **{k: v for k, v in data.items() if v not in (None, "", False)},
    )
    refresh_job(job, locked=True, entries=[entry])


def refresh_job(job: Job, *, locked: bool = False, entries: Sequence[AuditEntry] = ()) -> None:
    """Derive the job's status from its attempts after an attempt changed. `locked`: the caller
    holds the job's row lock and has just read it; `entries`: audit entries of that change,
    chained ahead of the job's own."""
    if not locked:
        job = Job.objects.select_for_update().get(pk=job.pk)
    pending = list(entries)
    status = job.status
    if job.status not in TERMINAL_JOB_STATUSES:
        status = derive_status(job, list(job.attempts.only(*STATUS_FIELDS)))
    if status == job.status:
        append(pending)
        return
    if status == JobStatus.NEEDS_REVIEW and job.agent.silent_merge_patterns:
        append(pending)
        pending = []
        if merge_silently(job):
            return
    before, job.status, job.updated_at = job.status, status, timezone.now()
    if status not in (JobStatus.QUEUED, JobStatus.RUNNING):
        job.finished_at = job.finished_at or job.updated_at
    job.save(update_fields=["status", "updated_at", "finished_at"])
    append([*pending, audit_entry("system", "job.status", job=job, before=before, after=status)])
    announce(job, before)


# What derive_status reads of each attempt (not its patch, files or card).
STATUS_FIELDS = ("id", "job_id", "round", "status", "result_commit", "summary")


def derive_status(job: Job, attempts: list[Attempt]) -> str:
    """The job's status from its latest round of attempts (see the module's docstring)."""
    latest = max((a.round for a in attempts), default=1)
    current = [a for a in attempts if a.round == latest]
    states = {a.status for a in current}
    if states & set(ACTIVE_ATTEMPT_STATUSES):
        return JobStatus.RUNNING
    if AttemptStatus.QUEUED in states:
        return JobStatus.QUEUED
    if job.status in DECIDED_JOB_STATUSES:
        return job.status
    if any(a.status == AttemptStatus.SUCCEEDED and a.has_changes for a in current):
        return JobStatus.NEEDS_REVIEW
    succeeded = [a for a in current if a.status == AttemptStatus.SUCCEEDED]
    if any(checks.has_findings(a.summary) for a in succeeded):
        return JobStatus.FINDINGS
    if succeeded:
        return JobStatus.NO_CHANGES
    if states == {AttemptStatus.CANCELLED}:
        return JobStatus.CANCELLED
    return JobStatus.FAILED


def cancel_job(user: Any, job: Job) -> Job:
    if not access.can_cancel(user, job):
        raise Forbidden("Only the submitter or a reviewer of the team may cancel this job.")
    with transaction.atomic():
        open_attempts = Attempt.objects.select_for_update().filter(
            job=job, status__in=(AttemptStatus.QUEUED, *ACTIVE_ATTEMPT_STATUSES)
        )
        ids = list(open_attempts.values_list("pk", flat=True))
        if not ids:
            raise Conflict(f"Job {job.public_id} is {job.status}; there is nothing to cancel.")
        job = Job.objects.select_for_update().get(pk=job.pk)
        audit(user, "job.cancel", job=job, before=job.status)
        # Running attempts are stopped by their worker, which polls this flag and keeps the
        # partial work; queued ones end here and now.
        Attempt.objects.filter(pk__in=ids).update(cancel_requested=True)
        for attempt_id in Attempt.objects.filter(
            pk__in=ids, status=AttemptStatus.QUEUED
        ).values_list("pk", flat=True):
            finish_attempt(
                attempt_id, AttemptStatus.CANCELLED, reason=f"cancelled by {user.get_username()}"
            )
    job.refresh_from_db()
    return job


def rerun_job(user: Any, job: Job, *, pin_image: bool = False, instruction: str = "") -> Attempt:
    """A new attempt of the same job on the latest commit of its target branch; `pin_image`
    runs it in the very image the latest attempt used (docker backend); `instruction`, when
    given and not the submitted one, is what this round is asked instead."""
    instruction = instruction.strip()
    if instruction == job.prompt.strip():
        instruction = ""
    check_instruction_size(instruction, "instruction")
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        require_ended(job, "re-run")
        base = resolve_ref(job.repository, job.target_branch).commit
        pinned = _image_of_latest(job) if pin_image else ""
        attempt = new_attempt(job, base, base, instruction=instruction)
        if pinned:
            Attempt.objects.filter(pk=attempt.pk).update(card={"pinned_image": pinned})
        changed = {"instruction_changed": True} if instruction else {}
        requeue(user, job, "job.rerun", attempt=attempt.number, base_commit=base, **changed)
    return attempt


def require_ended(job: Job, verb: str) -> None:
    """A job gets a new round only once it has ended, and never after it was merged."""
    if job.status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.MERGED):
        raise Conflict(f"Job {job.public_id} is {job.status}; it can be {verb} once it has ended.")


def requeue(user: Any, job: Job, action: str, **data: Any) -> None:
    """The job waits again for the new round just made: queued, audited, announced and handed
    to dispatch. Called under the job's row lock."""
    before, job.status, job.conflicts, job.finished_at = job.status, JobStatus.QUEUED, [], None
    job.save(update_fields=["status", "conflicts", "finished_at"])
    audit(user, action, job=job, before=before, after=job.status, **data)
    announce(job, before)
    dispatch_on_commit(job.team_id)


def _image_of_latest(job: Job) -> str:
    for card in job.attempts.order_by("-number").values_list("card", flat=True):
        if card.get("image_id"):
            return str(card["image_id"])
    raise BadInput(
        "No earlier attempt of this job ran in a docker image to pin.", field="pin_image"
    )
