"""Telling the world a job changed, once its transaction committed: the dashboards and job pages
over Channels (with the team's header counter, computed once per change), and, when it settled
into a new status, the `job_settled` signal's receivers (webhooks, browser notifications)."""

from __future__ import annotations

import logging
from functools import partial

from django.db import transaction

from jobs import events
from jobs.models import Attempt, Job, JobStatus
from jobs.serialize import job_summary, team_counters
from jobs.signals import job_settled

log = logging.getLogger(__name__)

UNSETTLED = (JobStatus.QUEUED, JobStatus.RUNNING)


def announce(job: Job, before: str | None = None) -> None:
    """Once committed, publish the job's state; `before` is its status before this change."""
    transaction.on_commit(partial(_announce_committed, job.pk, before))


def publish_submitted(jobs: list[tuple[Job, Attempt]]) -> None:
    """Publish committed new jobs (each with its latest attempt) from the objects the submit
    already holds: one message per job to its team, all in one trip, and no query but the teams'
    counters (nobody follows a new job's own group yet)."""
    counters = team_counters(sorted({job.team_id for job, _ in jobs}))
    events.publish_new_jobs(
        [(job, job_summary(job, latest), counters[job.team_id]) for job, latest in jobs]
    )


def publish(job: Job, latest: Attempt | None = None) -> None:
    _publish(job, latest)


def _publish(job: Job, latest: Attempt | None) -> None:
    counter = team_counters([job.team_id])[job.team_id]
    events.publish_job(job, job_summary(job, latest), counter)


def _announce_committed(job_id: int, before: str | None) -> None:
    job = Job.objects.select_related("team", "repository", "agent", "submitter").get(pk=job_id)
    _publish(job, None)
    if before == job.status or job.status in UNSETTLED:
        return
    for receiver, outcome in job_settled.send_robust(sender=Job, job=job):
        if isinstance(outcome, Exception):
            log.error("%r failed on job %s settling", receiver, job, exc_info=outcome)
