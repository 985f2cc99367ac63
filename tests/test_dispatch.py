"""The database is the queue's source of truth; RQ (real Redis) only delivers what fits the
team's concurrency limit, highest priority first."""

from __future__ import annotations

from datetime import timedelta

import django_rq
import pytest
from django.utils import timezone

from jobs import services
from jobs.models import Attempt, AttemptStatus

# Claims, the team's limit and the queue's order are row locks and conditional updates.
pytestmark = [pytest.mark.django_db, pytest.mark.database]


@pytest.fixture(autouse=True)
def empty_queues():
    for name in ("high", "default", "low"):
        django_rq.get_queue(name).empty()
    yield
    for name in ("high", "default", "low"):
        django_rq.get_queue(name).empty()


def queued_in_rq() -> list[int]:
    ids = []
    for name in ("high", "default", "low"):
        ids += [job.args[0] for job in django_rq.get_queue(name).get_jobs()]
    return ids


def submit(user, captured, priority=0):
    with captured(execute=True):
        job = services.submit_job(
            user, repo="demo", agent="shell", prompt="true", priority=priority
        )
    return job.attempts.get()


def test_jobs_over_the_team_limit_wait_and_are_never_refused(
    alice, repo, team, django_capture_on_commit_callbacks
):
    team.concurrency_limit = 1
    team.save()
    first = submit(alice, django_capture_on_commit_callbacks)
    second = submit(alice, django_capture_on_commit_callbacks)
    assert queued_in_rq() == [first.pk]
    second.refresh_from_db()
    assert (second.status, second.dispatched_at) == (AttemptStatus.QUEUED, None)

    with django_capture_on_commit_callbacks(execute=True):
        assert services.claim_attempt(first.pk, "test-worker")
        services.finish_attempt(first.pk, AttemptStatus.SUCCEEDED, exit_code=0)
    assert second.pk in queued_in_rq()


def test_higher_priority_is_dispatched_first(alice, repo, team, django_capture_on_commit_callbacks):
    team.concurrency_limit = 1
    team.save()
    running = submit(alice, django_capture_on_commit_callbacks)
    low = submit(alice, django_capture_on_commit_callbacks, priority=-5)
    high = submit(alice, django_capture_on_commit_callbacks, priority=5)
    with django_capture_on_commit_callbacks(execute=True):
        services.claim_attempt(running.pk, "w")
        services.finish_attempt(running.pk, AttemptStatus.FAILED, exit_code=1)
    assert high.pk in queued_in_rq()
    assert low.pk not in queued_in_rq()
    assert django_rq.get_queue("high").count == 1


def test_a_claimed_attempt_cannot_be_claimed_twice(alice, repo, django_capture_on_commit_callbacks):
    attempt = submit(alice, django_capture_on_commit_callbacks)
    assert services.claim_attempt(attempt.pk, "one")
    assert not services.claim_attempt(attempt.pk, "two")
    assert Attempt.objects.get(pk=attempt.pk).worker == "one"


def test_reconcile_hands_rq_again_what_redis_lost(alice, repo, django_capture_on_commit_callbacks):
    attempt = submit(alice, django_capture_on_commit_callbacks)
    for name in ("high", "default", "low"):
        django_rq.get_queue(name).empty()  # as if Redis had been flushed
    Attempt.objects.filter(pk=attempt.pk).update(
        dispatched_at=timezone.now() - services.REDELIVER_AFTER - timedelta(seconds=1)
    )
    assert services.reconcile()["redelivered"] == [str(attempt)]
    assert queued_in_rq() == [attempt.pk]


def test_reconcile_leaves_attempts_rq_still_holds(alice, repo, django_capture_on_commit_callbacks):
    attempt = submit(alice, django_capture_on_commit_callbacks)
    Attempt.objects.filter(pk=attempt.pk).update(
        dispatched_at=timezone.now() - services.REDELIVER_AFTER - timedelta(seconds=1)
    )
    assert services.reconcile()["redelivered"] == []
    assert queued_in_rq() == [attempt.pk]


def test_a_submit_whose_enqueue_fails_keeps_its_job_for_the_reconciler(
    alice, repo, django_capture_on_commit_callbacks, monkeypatch, caplog
):
    # Submit answers once the job is written; handing it to RQ comes after, and a Redis that
    # fails then costs the submitter nothing: the job is there and is delivered again later.
    def redis_down(attempt):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr("jobs.services.submission.enqueue", redis_down)
    attempt = submit(alice, django_capture_on_commit_callbacks)
    assert attempt.status == AttemptStatus.QUEUED and attempt.dispatched_at is not None
    assert queued_in_rq() == []
    assert "Redis is down" in caplog.text

    monkeypatch.undo()
    Attempt.objects.filter(pk=attempt.pk).update(
        dispatched_at=timezone.now() - services.REDELIVER_AFTER - timedelta(seconds=1)
    )
    assert services.reconcile()["redelivered"] == [str(attempt)]
    assert queued_in_rq() == [attempt.pk]
