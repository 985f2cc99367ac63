from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        user_logged_out.connect(_close_sockets, dispatch_uid="jobs.close_sockets")


def _close_sockets(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Signing out closes every websocket of that user (jobs.consumers handle session.closed)."""
    from jobs.events import send, user_group

    if user is not None:
        send(user_group(user.pk), {"type": "session.closed"})
