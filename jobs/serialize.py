"""JSON shapes shared by the API and the realtime messages, so both say the same thing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Count
from django.urls import reverse

from gateway.ledger import usage_of
from jobs.models import Attempt, Job, JobStatus


def attempt_dict(attempt: Attempt, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    files = attempt.files or []
    return {
        "number": attempt.number,
        "status": attempt.status,
        "branch": attempt.branch,
        "base_commit": attempt.base_commit,
        # When the store was synced with upstream as that base was read from its branch.
        "base_synced_at": _iso(attempt.base_synced_at),
        "sync_note": attempt.sync_note,
        "progress": attempt.progress,
        "progress_message": attempt.progress_message,
        "exit_code": attempt.exit_code,
        "reason": attempt.reason,
        "partial": attempt.partial,
        "result_commit": attempt.result_commit or None,
        "diff_hash": attempt.diff_hash or None,
        "diff_stats": {
            "files": len(files),
            "added": sum(f.get("added", 0) for f in files),
            "deleted": sum(f.get("deleted", 0) for f in files),
        },
        "files": files,
        "retry_of": attempt.retry_of.number if attempt.retry_of else None,
        # What this attempt was asked, when not the job's prompt as submitted (a follow-up).
        "instruction": attempt.instruction or None,
        "created_at": _iso(attempt.created_at),
        "started_at": _iso(attempt.started_at),
        "finished_at": _iso(attempt.finished_at),
        "last_seq": attempt.last_seq,
        "card": attempt.card,
        # The repository's environment it ran with (jobs/environments.py), null without one.
        "environment": attempt.card.get("environment"),
        "summary": attempt.summary,
        # What its model requests through the gateway cost (gateway.ledger).
        "usage": usage or usage_of([attempt.pk])[attempt.pk],
    }


def push_dict(job: Job) -> dict[str, Any] | None:
    """Whether a merged job left AgentHub; null until it is merged."""
    if not job.push_status:
        return None
    return {"status": job.push_status, "at": _iso(job.push_at), "detail": job.push_detail}


def job_summary(job: Job, latest: Attempt | None = None) -> dict[str, Any]:
    latest = latest or job.attempts.order_by("-number").first()
    return {
        "id": job.public_id,
        "url": reverse("api-job", args=[job.public_id]),
        "status": job.status,
        "title": job.title,
        "team": job.team.name,
        "repo": job.repository.name,
        "agent": job.agent.name,
        "submitter": job.submitter.get_username(),
        "base_ref": job.base_ref,
        "base_commit": job.base_commit,
        "priority": job.priority,
        "progress": latest.progress if latest else None,
        "progress_message": latest.progress_message if latest else "",
        "merge_commit": job.merge_commit or None,
        "conflicts": job.conflicts,
        "push": push_dict(job),
        # The latest attempt's result in brief (a check's counts, an AI agent's closing words)
        # and, when it did not succeed, why.
        "summary": latest.summary if latest else {},
        "summary_text": latest.summary_text if latest else "",
        "reason": latest.failure_reason if latest else "",
        "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
        "finished_at": _iso(job.finished_at),
    }


def job_detail(job: Job) -> dict[str, Any]:
    attempts = list(job.attempts.select_related("retry_of").order_by("number"))
    data = job_summary(job, attempts[-1] if attempts else None)
    data["prompt"] = job.prompt
    usage = usage_of(a.pk for a in attempts)
    data["attempts"] = [attempt_dict(a, usage[a.pk]) for a in attempts]
    data["reviews"] = [
        {
            "attempt": r.attempt.number,
            "reviewer": r.reviewer.get_username(),
            "decision": r.decision,
            "comment": r.comment,
            "diff_hash": r.diff_hash,
            "created_at": _iso(r.created_at),
            "comments": [c.as_dict() for c in r.line_comments.all()],
        }
        for r in job.reviews_qs().prefetch_related("line_comments")
    ]
    return data


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def team_counters(team_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Each team's running and queued jobs (the header's "N background jobs running"), in one
    query: computed once per change and pushed with it, never per page or per socket."""
    counters = {t: {"team": t, "running": 0, "queued": 0} for t in team_ids}
    rows = (
        Job.objects.filter(team_id__in=counters, status__in=(JobStatus.RUNNING, JobStatus.QUEUED))
        .values_list("team_id", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for team_id, status, n in rows:
        counters[team_id][status] = n
    return counters
