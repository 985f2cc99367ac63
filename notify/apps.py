from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "notify"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jobs.signals import job_settled

        job_settled.connect(_push, dispatch_uid="notify.push")


def _push(sender: Any, job: Any, **kwargs: Any) -> None:
    from notify.services import job_settled

    job_settled(job)
