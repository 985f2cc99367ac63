"""RQ entry points: importable functions that take ids and call the runner or a service."""

from __future__ import annotations

from jobs import runner, webhooks


def run_attempt(attempt_id: int) -> None:
    runner.execute(attempt_id)


def deliver_webhook(job_id: int, status: str) -> int:
    return webhooks.deliver(job_id, status)
