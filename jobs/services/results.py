"""Which result a review or merge is about, and the approvals it holds."""

from __future__ import annotations

from django.db.models import Count

from jobs.errors import Conflict
from jobs.models import Attempt, AttemptStatus, Decision, Job


def result_attempt(job: Job, number: int | None = None) -> Attempt:
    """The attempt a review or merge is about: the one named, else the latest with changes."""
    found = job.attempts.filter(status=AttemptStatus.SUCCEEDED).exclude(result_commit="")
    if number is not None:
        found = found.filter(number=number)
    attempt = found.order_by("-number").first()
    if attempt is None:
        which = f"attempt {number}" if number is not None else "any attempt"
        raise Conflict(f"Job {job.public_id} has no finished result to review for {which}.")
    return attempt


def approvals(attempt: Attempt) -> int:
    """Approvals that still hold: those given to the attempt's current diff."""
    return attempt.reviews.filter(decision=Decision.APPROVE, diff_hash=attempt.diff_hash).aggregate(
        n=Count("reviewer", distinct=True)
    )["n"]
