"""Telling people: who hears about a settled job, whether it is worth a push, and the browsers
that subscribed to pushes. Open tabs learn of jobs over the dashboard websocket and follow the
same preferences in the page (see context_processors); this module covers the closed tab."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from django.contrib.auth import get_user_model
from django.utils import timezone

from jobs.errors import BadInput, Conflict
from jobs.models import Job, JobStatus, Membership, Role
from notify import webpush
from notify.models import ENDPOINT_MAX_LENGTH, NotificationPreference, PushSubscription

log = logging.getLogger(__name__)

# The settled states, as the headline of the notification ("Job ab12cd34ef needs review").
HEADLINES = {
    JobStatus.NEEDS_REVIEW: "needs review",
    JobStatus.NO_CHANGES: "finished without changes",
    JobStatus.FINDINGS: "reported findings",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "was cancelled",
    JobStatus.APPROVED: "was approved",
    JobStatus.MERGED: "was merged",
    JobStatus.CONFLICT: "cannot merge: conflicts",
    JobStatus.REJECTED: "was rejected",
}
BODY_MAX_CHARS = 120
MAX_SUBSCRIPTIONS_PER_USER = 20
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")


# --- a job settled -----------------------------------------------------------------------------


def job_settled(job: Job) -> None:
    """Push a notification about the job to the browsers of the people it concerns.

    Receives jobs.signals.job_settled on commit whenever a job settles. Best effort: the
    job's state is already committed and shown on the dashboard, so a Redis hiccup here is
    logged rather than raised into the transition that called us.
    """
    if job.status not in HEADLINES:
        return
    try:
        message = payload(job)
        duration = job_duration(job)
        for user in recipients(job):
            if not should_push(NotificationPreference.of(user), job.status, duration):
                continue
            for subscription_id in user.push_subscriptions.values_list("pk", flat=True):
                enqueue_push(subscription_id, message)
    except Exception:
        log.exception("could not schedule notifications for job %s", job.public_id)


def recipients(job: Job) -> list[Any]:
    """The submitter always; the team's reviewers and admins too when the job waits for review.
    Only current, active members of the job's team: nobody hears of another team's jobs."""
    user_ids = {job.submitter_id}
    if job.status == JobStatus.NEEDS_REVIEW:
        user_ids |= set(
            Membership.objects.filter(
                team_id=job.team_id, role__in=(Role.REVIEWER, Role.ADMIN)
            ).values_list("user_id", flat=True)
        )
    return list(
        get_user_model()
        .objects.filter(pk__in=user_ids, is_active=True, memberships__team_id=job.team_id)
        .distinct()
        .order_by("pk")
    )


def should_push(prefs: NotificationPreference, status: str, duration: timedelta) -> bool:
    """PRODUCT.md's policy: browser notifications belong to the prominent alert, for jobs that
    took at least alert_after_seconds; failures (and a check's findings) always alert;
    do-not-disturb mutes them all."""
    if prefs.do_not_disturb:
        return False
    if status in (JobStatus.FAILED, JobStatus.FINDINGS):
        return True
    return duration >= timedelta(seconds=prefs.alert_after_seconds)


# A person's decision is timed from the submit (the wait it ends), not by the run before it.
DECIDED = (
    JobStatus.APPROVED,
    JobStatus.MERGED,
    JobStatus.REJECTED,
    JobStatus.CHANGES_REQUESTED,
    JobStatus.CONFLICT,
)


def job_duration(job: Job) -> timedelta:
    ended = None if job.status in DECIDED else job.finished_at
    return (ended or timezone.now()) - job.created_at


def payload(job: Job) -> dict[str, Any]:
    """What the service worker shows (static/agenthub/sw.js). Plain text: notifications do not
    render markup, and the title came from a user."""
    body = " ".join(job.title.split())
    if len(body) > BODY_MAX_CHARS:
        body = body[: BODY_MAX_CHARS - 1].rstrip() + "…"
    return {
        "title": f"Job {job.public_id} {HEADLINES[JobStatus(job.status)]}",
        "body": body,
        "url": f"/jobs/{job.public_id}/",
        "tag": job.public_id,
        "status": job.status,
    }


def enqueue_push(subscription_id: int, message: dict[str, Any]) -> None:
    import django_rq
    from rq import Retry

    django_rq.get_queue("default").enqueue(
        "notify.webpush.send_job_push",
        subscription_id,
        message,
        retry=Retry(max=len(webpush.RETRY_INTERVALS), interval=webpush.RETRY_INTERVALS),
        job_timeout=60,
        result_ttl=3600,
        failure_ttl=24 * 3600,
    )


# --- subscriptions -----------------------------------------------------------------------------


def subscribe(user: Any, data: Any, user_agent: str = "") -> tuple[PushSubscription, bool]:
    """Save a browser's PushSubscription.toJSON(); returns (subscription, created).

    The endpoint identifies the browser: subscribing again updates its keys, and a browser
    signed in as someone else now notifies the person signed in.
    """
    if not isinstance(data, dict):
        raise BadInput("Send the browser's PushSubscription as a JSON object.")
    endpoint = data.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise BadInput("endpoint is missing: send PushSubscription.toJSON().", field="endpoint")
    if len(endpoint) > ENDPOINT_MAX_LENGTH:
        raise BadInput(
            f"endpoint is longer than {ENDPOINT_MAX_LENGTH} characters.", field="endpoint"
        )
    if problem := webpush.endpoint_problem(endpoint):
        raise BadInput(problem, field="endpoint")
    keys = data.get("keys")
    if not isinstance(keys, dict):
        raise BadInput(
            "keys is missing: send PushSubscription.toJSON() with keys.p256dh and keys.auth.",
            field="keys",
        )
    p256dh = _key(keys, "p256dh", _check_p256dh)
    auth = _key(keys, "auth", _check_auth)
    existing = PushSubscription.objects.filter(endpoint=endpoint).first()
    if existing is None and user.push_subscriptions.count() >= MAX_SUBSCRIPTIONS_PER_USER:
        raise Conflict(
            f"You already receive notifications in {MAX_SUBSCRIPTIONS_PER_USER} browsers; turn "
            "them off in one you no longer use first."
        )
    return PushSubscription.objects.update_or_create(
        endpoint=endpoint,
        defaults={"user": user, "p256dh": p256dh, "auth": auth, "user_agent": user_agent[:300]},
    )


def unsubscribe(user: Any, endpoint: Any) -> bool:
    if not isinstance(endpoint, str) or not endpoint:
        raise BadInput("endpoint is missing: name the subscription to remove.", field="endpoint")
    deleted, _ = PushSubscription.objects.filter(user=user, endpoint=endpoint).delete()
    return deleted > 0


def _key(keys: dict[str, Any], name: str, check: Callable[[bytes], str | None]) -> str:
    field = f"keys.{name}"
    value = keys.get(name)
    if not isinstance(value, str) or not value:
        raise BadInput(f"{field} is missing: send PushSubscription.toJSON().", field=field)
    if not _BASE64URL.match(value):
        raise BadInput(f"{field} must be base64url, as the browser gives it.", field=field)
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise BadInput(
            f"{field} must be base64url, as the browser gives it.", field=field
        ) from None
    if problem := check(raw):
        raise BadInput(f"{field} {problem}", field=field)
    return value.rstrip("=")


def _check_p256dh(raw: bytes) -> str | None:
    wrong = "must be an uncompressed P-256 public key (65 bytes from 0x04)."
    if len(raw) != 65 or raw[0] != 4:
        return wrong
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        return "is not a point on the P-256 curve."
    return None


def _check_auth(raw: bytes) -> str | None:
    return None if len(raw) == 16 else f"must be 16 bytes, not {len(raw)}."
