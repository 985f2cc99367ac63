"""The reconciler, run by every worker every few seconds: attempts whose worker stopped beating
are marked lost (and retried once if allowed), attempts RQ no longer holds are handed to it
again, waiting attempts are dispatched, and sandbox containers nobody runs are removed."""

from __future__ import annotations

from datetime import timedelta

import django_rq
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob
from rq.job import JobStatus as RQStatus

from jobs import sandbox
from jobs.models import ACTIVE_ATTEMPT_STATUSES, Attempt, AttemptStatus, Job, Team
from jobs.services.audit import audit
from jobs.services.dispatch import dispatch, enqueue, rq_job_id
from jobs.services.lifecycle import finish_attempt, new_attempt, refresh_job

# A dispatched attempt still queued after this long is checked against RQ by the reconciler.
REDELIVER_AFTER = timedelta(minutes=2)


def reconcile() -> dict[str, list[str]]:
    cutoff = timezone.now() - timedelta(seconds=settings.AGENTHUB_HEARTBEAT_TIMEOUT)
    stale = Attempt.objects.filter(status__in=ACTIVE_ATTEMPT_STATUSES, heartbeat_at__lt=cutoff)
    lost, retried = [], []
    for attempt_id in list(stale.values_list("pk", flat=True)):
        attempt = finish_attempt(
            attempt_id, AttemptStatus.LOST, reason="the worker stopped responding"
        )
        if attempt is None:
            continue
        lost.append(str(attempt))
        if attempt.job.agent.retry_allowed and attempt.retry_of_id is None:
            retried.append(str(_retry(attempt)))
    redelivered = _redeliver()
    for team_id in Team.objects.values_list("pk", flat=True):
        dispatch(team_id)
    return {"lost": lost, "retried": retried, "redelivered": redelivered, "reaped": _reap()}


def _retry(attempt: Attempt) -> Attempt:
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=attempt.job_id)
        retry = new_attempt(
            job,
            attempt.base_commit,
            attempt.start_commit,
            retry_of=attempt,
            review=attempt.review,
            instruction=attempt.instruction,
        )
        audit("system", "attempt.retry", job=job, target=str(retry), retry_of=str(attempt))
        refresh_job(job)
    return retry


def _reap() -> list[str]:
    """Remove sandbox containers whose attempt is no longer running (its worker died, the host
    restarted): a container does not die with its worker the way a bwrap sandbox does."""
    if not sandbox.docker_available():
        return []

    def keep(labels: dict[str, str]) -> bool:
        if labels.get("agenthub.instance") != settings.AGENTHUB_INSTANCE:
            return True  # another installation's, or another test run's
        attempt_id = labels.get("agenthub.attempt", "")
        return (
            attempt_id.isdigit()
            and Attempt.objects.filter(
                pk=int(attempt_id), status__in=ACTIVE_ATTEMPT_STATUSES
            ).exists()
        )

    return sandbox.reap(keep)


def _redeliver() -> list[str]:
    """Hand RQ again the attempts it no longer holds (Redis was flushed or lost the message, or
    the job failed before its claim): the database, not Redis, says what still has to run."""
    connection = django_rq.get_connection()
    waiting = Attempt.objects.filter(
        status=AttemptStatus.QUEUED, dispatched_at__lt=timezone.now() - REDELIVER_AFTER
    ).select_related("job__agent")
    redelivered = []
    for attempt in waiting:
        try:
            status = RQJob.fetch(rq_job_id(attempt), connection=connection).get_status()
        except NoSuchJobError:
            status = None
        if status in (None, RQStatus.FAILED, RQStatus.STOPPED, RQStatus.CANCELED):
            enqueue(attempt)
            redelivered.append(str(attempt))
    return redelivered
