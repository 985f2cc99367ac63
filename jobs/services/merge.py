"""Merging a result into its branch, in the store only (never anyone's working tree): by a
reviewer once the approvals suffice, or silently when the agent's policy covers every changed
path; then pushed upstream when the repository has a push URL."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from jobs import access, authorship, git_auth, remotes, workspace
from jobs.errors import Conflict
from jobs.models import Attempt, Decision, Job, JobStatus, PushStatus
from jobs.services.announce import announce, publish
from jobs.services.audit import audit
from jobs.services.repositories import auth_of
from jobs.services.results import approvals, result_attempt

log = logging.getLogger(__name__)


def merge_job(user: Any, job: Job, *, attempt: int | None = None) -> str:
    access.require_reviewer(user, job)
    _refuse_escaping_paths(user, job, attempt)
    with transaction.atomic():
        job = Job.objects.select_for_update().select_related("repository", "agent").get(pk=job.pk)
        if job.status not in (JobStatus.APPROVED, JobStatus.CONFLICT):
            raise Conflict(
                f"Job {job.public_id} is {job.status}; only an approved job can be merged."
            )
        target = result_attempt(job, attempt)
        have, need = approvals(target), job.agent.required_approvals
        if have < need:
            raise Conflict(
                f"Attempt {target.number} has {have} of {need} approvals for its current diff."
            )
        approving = target.reviews.filter(decision=Decision.APPROVE, diff_hash=target.diff_hash)
        approvers = sorted(
            {r.reviewer for r in approving.select_related("reviewer")}, key=lambda u: u.pk
        )
        result = _merge_result(
            user, job, target, "", authorship.approved_by(approvers), attempt=target.number
        )
    if result.conflicts:
        raise Conflict(
            f"Merging into {job.target_branch} conflicts in {len(result.conflicts)} file(s).",
            conflicts=result.conflicts,
        )
    _push(user, job)
    return job.merge_commit


def merge_silently(job: Job) -> bool:
    """Merge a job's fresh result without review when its agent's policy covers every path it
    touched; the audit trail says so and names the patterns. Called under the job's row lock as
    it settles; False leaves it to the reviewers.

    Only a job with one requested attempt: choosing between several results is a reviewer's call.
    """
    agent = job.agent
    if not agent.silent_merge_patterns or job.attempts_requested != 1:
        return False
    target = result_attempt(job)
    paths = [p for f in target.files for p in (f["path"], f.get("old_path")) if p]
    if target.partial or not agent.merges_silently(paths):
        return False
    store = Path(job.repository.store_path)
    if workspace.escaping_paths(store, target.result_commit):
        return False  # merge_job refuses these; a reviewer sees why
    job.finished_at = job.finished_at or timezone.now()
    job.save(update_fields=["finished_at"])
    result = _merge_result(
        "system",
        job,
        target,
        f"Merged without review: every changed path matches agent {agent.name}'s silent-merge "
        "policy.",
        [],
        attempt=target.number,
        silent=True,
        policy=agent.silent_merge_patterns,
        paths=paths,
    )
    if not result.conflicts:
        transaction.on_commit(lambda: _push("system", job))
    return True


def _merge_result(
    actor: Any, job: Job, target: Attempt, note: str, approved: list[str], **data: Any
) -> workspace.MergeResult:
    """Merge the attempt's result into the job's branch in the store, inside the caller's
    transaction holding the job's row: MERGED with the commit, or CONFLICT with the files.
    What lands names the approvers (authorship), a merge commit and a fast-forward alike."""
    said = f"{note}\n\n" if note else ""
    message = (
        f"Merge AgentHub job {job.public_id}: {job.title}\n\n{said}AgentHub-Job: {job.public_id}\n"
    )
    result = workspace.merge(
        Path(job.repository.store_path),
        job.target_branch,
        target.result_commit,
        message,
        identity=authorship.identity(),
        trailers=approved,
    )
    before = job.status
    if result.conflicts:
        job.status, job.conflicts = JobStatus.CONFLICT, result.conflicts
        job.save(update_fields=["status", "conflicts"])
        audit(
            actor,
            "job.merge_conflict",
            job=job,
            before=before,
            after=job.status,
            conflicts=result.conflicts,
            **data,
        )
    else:
        job.status, job.merge_commit, job.conflicts = JobStatus.MERGED, result.commit or "", []
        job.updated_at = timezone.now()
        job.save(update_fields=["status", "merge_commit", "conflicts", "updated_at"])
        audit(
            actor,
            "job.merge",
            job=job,
            before=before,
            after=job.status,
            commit=result.commit,
            branch=job.target_branch,
            fast_forward=result.fast_forward,
            **data,
        )
    announce(job, before)
    return result


def _refuse_escaping_paths(user: Any, job: Job, number: int | None) -> None:
    try:
        target = result_attempt(job, number)
    except Conflict:
        return  # merge_job says what is missing
    escaping = workspace.escaping_paths(Path(job.repository.store_path), target.result_commit)
    if escaping:
        audit(user, "job.merge_refused", job=job, paths=escaping)
        raise Conflict(
            f"Refusing to merge paths that would escape the repository: {', '.join(escaping)}",
            conflicts=escaping,
        )


def _push(user: Any, job: Job) -> None:
    """Push the job's branch upstream and record how it went on the job. Upstream having moved
    on (a non-fast-forward refusal) is met by merging its new head into the branch, when that
    merges cleanly, and pushing once more: never a forced push."""
    repository = job.repository
    if not repository.push_url:
        _pushed(job, PushStatus.NOT_CONFIGURED, "kept in AgentHub, not pushed: no push URL")
        return
    store, url = Path(repository.store_path), repository.push_url
    shown, auth = workspace.redacted(url), auth_of(repository.credentials)
    try:
        try:
            remotes.push(store, url, job.target_branch, auth)
        except workspace.GitError as exc:
            if not _refused_as_behind(exc):
                raise
            _merge_pushed_head(job, store, url, auth)
            remotes.push(store, url, job.target_branch, auth)
    except (workspace.GitError, ValueError) as exc:
        reason = workspace.reason(exc)
        _pushed(job, PushStatus.FAILED, reason)
        audit(user, "job.push_failed", job=job, url=shown, error=reason)
        log.warning("push of %s to %s failed: %s", job.public_id, shown, reason)
        return
    branch = job.target_branch
    _pushed(job, PushStatus.PUSHED, f"pushed to {branch} at {shown}")
    audit(user, "job.push", job=job, url=shown, branch=branch, commit=job.merge_commit)


def push_job(user: Any, job: Job) -> Job:
    """Try a merged job's push again (after a failure, or once a push URL is set)."""
    access.require_reviewer(user, job)
    if job.status != JobStatus.MERGED:
        raise Conflict(f"Job {job.public_id} is {job.status}; only a merged job is pushed.")
    _push(user, job)
    job.refresh_from_db()
    return job


def _pushed(job: Job, status: str, detail: str) -> None:
    job.push_status, job.push_at, job.push_detail = status, timezone.now(), detail[:500]
    Job.objects.filter(pk=job.pk).update(
        push_status=job.push_status, push_at=job.push_at, push_detail=job.push_detail
    )
    publish(job)  # the pages that showed the merge show where it went


def _refused_as_behind(exc: workspace.GitError) -> bool:
    return any(sign in exc.stderr for sign in ("non-fast-forward", "fetch first", "[rejected]"))


def _merge_pushed_head(job: Job, store: Path, url: str, auth: git_auth.Auth) -> None:
    """The branch moved on where we push: fetch its head there and merge it into ours."""
    head = remotes.fetch_branch(store, url, job.target_branch, auth)
    message = f"Merge upstream {job.target_branch} into AgentHub job {job.public_id}'s merge\n"
    merged = workspace.merge(
        store, job.target_branch, head, message, identity=authorship.identity()
    )
    if merged.conflicts:
        raise ValueError(
            f"upstream's {job.target_branch} moved on and conflicts with the merge in "
            f"{', '.join(merged.conflicts)}; the merge is kept in AgentHub"
        )
