"""Who may see and do what. Views, the API and the websocket consumers all fetch through here."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from jobs.errors import Forbidden, NotFound
from jobs.models import Job, JobStatus, Membership, Role, Team


def memberships(user: Any) -> QuerySet[Membership]:
    if not user.is_authenticated:
        return Membership.objects.none()
    return Membership.objects.filter(user=user).select_related("team")


def teams(user: Any) -> QuerySet[Team]:
    return (
        Team.objects.filter(memberships__user=user)
        if user.is_authenticated
        else Team.objects.none()
    )


def membership(user: Any, team: Team | int) -> Membership | None:
    team_id = team if isinstance(team, int) else team.pk
    return memberships(user).filter(team_id=team_id).first()


def visible_jobs(user: Any) -> QuerySet[Job]:
    return Job.objects.filter(team__in=teams(user)).select_related(
        "team", "repository", "agent", "submitter"
    )


def awaiting_review(user: Any) -> QuerySet[Job]:
    """Jobs with a result waiting for a decision that this user may take: in teams where they
    review, submitted by someone else."""
    reviewing = memberships(user).filter(role__in=(Role.REVIEWER, Role.ADMIN))
    return (
        visible_jobs(user)
        .filter(status=JobStatus.NEEDS_REVIEW, team__in=reviewing.values("team"))
        .exclude(submitter_id=user.pk)
    )


def get_job(user: Any, public_id: str) -> Job:
    """The job if the user belongs to its team; otherwise NotFound, never a hint it exists."""
    job = visible_jobs(user).filter(public_id=public_id).first()
    if job is None:
        raise NotFound(f"No job {public_id!r} in your teams.")
    return job


def require_reviewer(user: Any, job: Job) -> Membership:
    member = membership(user, job.team_id)
    if member is None:
        raise NotFound(f"No job {job.public_id!r} in your teams.")
    if member.role not in (Role.REVIEWER, Role.ADMIN):
        raise Forbidden(
            f"You are a {member.role} of team {job.team.name}; reviewing needs a reviewer."
        )
    return member


def can_cancel(user: Any, job: Job) -> bool:
    member = membership(user, job.team_id)
    return member is not None and (job.submitter_id == user.pk or member.can_review)


def is_concerned(user: Any, job: Job) -> bool:
    """Whether news of the job is for this user: their own job, or one waiting for them to
    review. Decides the in-page alerts (jobs.consumers) and the push notifications."""
    if job.submitter_id == user.pk:
        return True
    if job.status != JobStatus.NEEDS_REVIEW:
        return False
    member = membership(user, job.team_id)
    return member is not None and member.can_review
