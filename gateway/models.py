"""What the gateway keeps: each team's model credentials (encrypted), each running attempt's
grant to use them, and one row per model request it forwarded (the attempt's usage)."""

from __future__ import annotations

import hashlib
import secrets
from decimal import Decimal

from django.db import models
from django.utils import timezone

from gateway import vault
from gateway.providers import WIRES, Provider
from jobs.models import Attempt, Team

TOKEN_PREFIX = "ahg_"  # noqa: S105 - a prefix, not a secret


class ModelCredential(models.Model):
    """A team's key for one provider. The key is write-only: it is stored encrypted and only
    the gateway decrypts it, to put it in the header of a request it forwards."""

    team = models.ForeignKey(Team, models.CASCADE, related_name="model_credentials")
    provider = models.CharField(max_length=32, choices=Provider.choices)
    # Empty: the provider's own (providers.WIRES). Any http(s) URL, loopback and private ones
    # included: a self-hosted model is the point of `openai-compatible`.
    base_url = models.URLField(max_length=500, blank=True)
    sealed_key = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "provider"], name="credential_per_provider")
        ]

    def __str__(self) -> str:
        return f"{self.team.name}/{self.provider}"

    @property
    def upstream(self) -> str:
        return (self.base_url or WIRES[Provider(self.provider)].default_base_url).rstrip("/")

    def set_key(self, key: str) -> None:
        self.sealed_key = vault.encrypt(key)

    def key(self) -> str:
        return vault.decrypt(self.sealed_key)


class Grant(models.Model):
    """An attempt's token for the gateway: valid only while the attempt is preparing or
    running. Only its hash is stored; the sandbox gets the token itself."""

    attempt = models.OneToOneField(Attempt, models.CASCADE, related_name="gateway_grant")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"grant for {self.attempt}"

    @classmethod
    def issue(cls, attempt: Attempt) -> str:
        """A new token for the attempt (replacing any earlier one)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        cls.objects.update_or_create(attempt=attempt, defaults={"token_hash": hash_token(token)})
        return token


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ModelRequest(models.Model):
    """One request the gateway forwarded for an attempt, with the usage the provider reported."""

    attempt = models.ForeignKey(Attempt, models.CASCADE, related_name="model_requests")
    provider = models.CharField(max_length=32, choices=Provider.choices)
    path = models.CharField(max_length=300)
    model = models.CharField(max_length=200, blank=True)
    streamed = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField(null=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    started_at = models.DateTimeField(default=timezone.now)
    seconds = models.FloatField(default=0)

    class Meta:
        indexes = [models.Index(fields=["attempt", "started_at"])]

    def __str__(self) -> str:
        return f"{self.provider} {self.model} for {self.attempt}"
