"""Handing waiting attempts to RQ: highest priority first, never more than the team's concurrency
limit at a time. The database says what has to run; RQ only delivers it."""

from __future__ import annotations

from functools import partial

import django_rq
from django.db import transaction
from django.utils import timezone

from jobs.models import ACTIVE_ATTEMPT_STATUSES, Attempt, AttemptStatus, Team


def queue_for(priority: int) -> str:
    return "high" if priority > 0 else "low" if priority < 0 else "default"


def dispatch(team_id: int, *, handoff: list[Attempt] | None = None) -> list[int]:
    """Hand the team's waiting attempts to RQ, highest priority first, up to the team's limit:
    once committed, or, given `handoff`, by adding them to it for the caller to enqueue.

    Called by submit (in its transaction), after an attempt ends, and by the reconciler. Jobs
    over the limit stay queued in the database until a slot frees up; nothing is refused.
    """
    with transaction.atomic(savepoint=False):
        team = Team.objects.select_for_update().get(pk=team_id)
        busy = Attempt.objects.filter(
            job__team=team,
            dispatched_at__isnull=False,
            status__in=(AttemptStatus.QUEUED, *ACTIVE_ATTEMPT_STATUSES),
        ).count()
        free = max(team.concurrency_limit - busy, 0)
        if not free:
            return []
        waiting = list(
            Attempt.objects.filter(
                job__team=team, status=AttemptStatus.QUEUED, dispatched_at__isnull=True
            )
            .select_related("job__agent")
            .order_by("-job__priority", "created_at", "number")[:free]
        )
        Attempt.objects.filter(pk__in=[a.pk for a in waiting]).update(dispatched_at=timezone.now())
        if handoff is not None:
            handoff += waiting
        else:
            for attempt in waiting:
                transaction.on_commit(partial(enqueue, attempt))
    return [a.pk for a in waiting]


def dispatch_on_commit(team_id: int) -> None:
    transaction.on_commit(partial(dispatch, team_id))


def rq_job_id(attempt: Attempt) -> str:
    return f"agenthub-{attempt.job.public_id}-{attempt.number}"


def enqueue(attempt: Attempt) -> None:
    job = attempt.job
    django_rq.get_queue(queue_for(job.priority)).enqueue(
        "jobs.tasks.run_attempt",
        attempt.pk,
        job_id=rq_job_id(attempt),
        job_timeout=job.agent.timeout_seconds + 600,
        result_ttl=3600,
        failure_ttl=7 * 24 * 3600,
    )
