"""Webhooks: where a team (or one job's submitter, through callback_url) wants to be told that
a job settled, and the log of every delivery to them."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from jobs.models import Job, JobStatus, Team

URL_MAX_LENGTH = 2000
# The statuses a job settles into; each change into one of them is an event ("job.<status>").
EVENT_STATUSES = [s for s in JobStatus if s not in (JobStatus.QUEUED, JobStatus.RUNNING)]


def new_secret() -> str:
    return secrets.token_hex(32)


class Webhook(models.Model):
    """A team's hook (job empty) fires for the team's jobs; a job's hook (made from the job's
    callback_url) fires for that job only."""

    team = models.ForeignKey(Team, models.CASCADE, related_name="webhooks")
    job = models.ForeignKey(
        Job, models.CASCADE, null=True, blank=True, related_name="webhooks", editable=False
    )
    url = models.URLField("URL", max_length=URL_MAX_LENGTH)
    # Signs every body (X-AgentHub-Signature); kept in clear because signing needs it.
    secret = models.CharField(max_length=64, default=new_secret, editable=False)
    # Job statuses to be told about; empty: every one.
    events = models.JSONField(default=list, blank=True)
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["job"], condition=models.Q(job__isnull=False), name="one_callback_per_job"
            )
        ]

    def __str__(self) -> str:
        owner = f"job {self.job}" if self.job_id else f"team {self.team}"
        return f"{self.url} ({owner})"

    def wants(self, status: str) -> bool:
        return not self.events or status in self.events

    @property
    def events_label(self) -> str:
        return ", ".join(self.events) if self.events else "every status"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Delivery(models.Model):
    """One event sent to one hook: its body exactly as signed and sent, and every try."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    hook = models.ForeignKey(Webhook, models.CASCADE, related_name="deliveries")
    job = models.ForeignKey(Job, models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=64)
    body = models.TextField()
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    # Every try in order: {"at", "status_code", "error", "ms"}.
    tries = models.JSONField(default=list, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    redelivery_of = models.ForeignKey(
        "self", models.SET_NULL, null=True, blank=True, related_name="redeliveries"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["hook", "-created_at"]),
            models.Index(fields=["status", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.hook.url} ({self.pk})"

    @property
    def status_codes(self) -> list[Any]:
        """The answer of each try (None where there was none), for the logs."""
        return [t.get("status_code") for t in self.tries]
