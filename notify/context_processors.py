from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from notify.models import NotificationPreference


def notifications(request: HttpRequest) -> dict[str, Any]:
    """The signed-in user's notification preferences for base.html's <body data-*> attributes,
    which the page's JavaScript reads. Lazy: a partial that does not use them costs no query."""
    return {"notification_prefs": SimpleLazyObject(lambda: _prefs(request))}


def _prefs(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    signed_in = bool(user is not None and user.is_authenticated)
    prefs = NotificationPreference.of(user) if signed_in else NotificationPreference()
    return {**prefs.as_dict(), "push_enabled": signed_in}
