from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

        user_logged_out.connect(_close_sockets, dispatch_uid="jobs.close_sockets")
        user_logged_out.connect(_audit_sign_out, dispatch_uid="jobs.audit_sign_out")
        user_logged_in.connect(_audit_sign_in, dispatch_uid="jobs.audit_sign_in")
        user_login_failed.connect(_audit_failed_sign_in, dispatch_uid="jobs.audit_failed_sign_in")


def _close_sockets(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Signing out closes every websocket of that user (jobs.consumers handle session.closed)."""
    from jobs.events import send, user_group

    if user is not None:
        send(user_group(user.pk), {"type": "session.closed"})


def _client(request: Any) -> dict[str, Any]:
    if request is None:
        return {}
    return {
        "ip": request.META.get("REMOTE_ADDR", ""),
        "user_agent": request.META.get("HTTP_USER_AGENT", "")[:200],
    }


def _audit_sign_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    from jobs.services import audit

    audit(user, "auth.sign_in", target=user.get_username(), **_client(request))


def _audit_sign_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    from jobs.services import audit

    if user is not None:
        audit(user, "auth.sign_out", target=user.get_username(), **_client(request))


def _audit_failed_sign_in(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    """Django has already replaced the password in `credentials`; only the name tried is kept."""
    from django.contrib.auth import get_user_model

    from jobs.services import audit

    tried = str(credentials.get(get_user_model().USERNAME_FIELD, ""))[:150]
    audit("anonymous", "auth.sign_in_failed", target=tried, **_client(request))
