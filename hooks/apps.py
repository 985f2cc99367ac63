from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class HooksConfig(AppConfig):
    name = "hooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jobs.signals import job_settled

        job_settled.connect(_deliver, dispatch_uid="hooks.deliver")


def _deliver(sender: Any, job: Any, **kwargs: Any) -> None:
    from hooks.services import job_settled

    job_settled(job)
