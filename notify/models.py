"""Who wants to be told what, and where: per-user notification preferences and the browsers
subscribed to Web Push."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django.utils import timezone

# A day: anything longer is "always quiet", which is what do-not-disturb is for.
MAX_THRESHOLD_SECONDS = 24 * 3600
# Push services hand out long URLs (FCM's and Apple's exceed URLField's default 200).
ENDPOINT_MAX_LENGTH = 2000


class NotificationPreference(models.Model):
    """The policy of PRODUCT.md ("the tap on the shoulder"), overridable per user. A user without
    a row gets the defaults; the row is made the first time they save the settings page."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, models.CASCADE, related_name="notification_preference"
    )
    toast_after_seconds = models.PositiveIntegerField(
        default=10,
        validators=[MaxValueValidator(MAX_THRESHOLD_SECONDS)],
        help_text="Jobs that take at least this long show a toast in the page when they end.",
    )
    alert_after_seconds = models.PositiveIntegerField(
        default=60,
        validators=[MaxValueValidator(MAX_THRESHOLD_SECONDS)],
        help_text=(
            "Jobs that take at least this long raise a prominent alert: a toast that stays, a "
            "browser notification (pushed when no AgentHub tab is open) and the optional sound."
        ),
    )
    sound = models.BooleanField(default=False, help_text="Play a sound with prominent alerts.")
    do_not_disturb = models.BooleanField(
        default=False, help_text="Mute every popup, sound and notification; keep the tab badge."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(alert_after_seconds__gte=models.F("toast_after_seconds")),
                name="alert_not_before_toast",
            )
        ]

    def __str__(self) -> str:
        return f"notification preferences of {self.user}"

    def clean(self) -> None:
        toast, alert = self.toast_after_seconds, self.alert_after_seconds
        if toast is not None and alert is not None and alert < toast:
            raise ValidationError(
                {
                    "alert_after_seconds": (
                        f"The prominent alert cannot come sooner than the toast: use "
                        f"{toast} seconds or more, or lower the toast threshold."
                    )
                }
            )

    def as_dict(self) -> dict[str, Any]:
        """What the page's JavaScript reads (see context_processors)."""
        return {
            "toast_after_seconds": self.toast_after_seconds,
            "alert_after_seconds": self.alert_after_seconds,
            "sound": self.sound,
            "do_not_disturb": self.do_not_disturb,
        }

    @classmethod
    def of(cls, user: Any) -> NotificationPreference:
        """The user's saved preferences, or unsaved defaults (saving them creates the row)."""
        return cls.objects.filter(user=user).first() or cls(user=user)


class PushSubscription(models.Model):
    """One browser's PushSubscription (its toJSON() shape), owned by the user signed in when it
    subscribed. The endpoint is the push service's URL for that browser, unique world-wide."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.CASCADE, related_name="push_subscriptions"
    )
    endpoint = models.URLField(max_length=ENDPOINT_MAX_LENGTH, unique=True)
    # Base64url as the browser gives them: the P-256 public key and the 16-byte auth secret.
    p256dh = models.CharField(max_length=100)
    auth = models.CharField(max_length=40)
    user_agent = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_success_at = models.DateTimeField(null=True, blank=True)
    # Consecutive failed deliveries (reset by a success); 404/410 deletes the row instead.
    failures = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.user} via {self.endpoint[:60]}"

    def info(self) -> dict[str, Any]:
        """The subscription_info pywebpush expects."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}
