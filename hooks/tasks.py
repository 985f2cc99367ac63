"""RQ entry point: one try of a webhook delivery (retried by RQ, see services.enqueue)."""

from __future__ import annotations

from rq import get_current_job

from hooks import services


def deliver(delivery_id: str) -> str | None:
    # RQ counts a job's retries down after a failed try, so this try is the last at 0.
    current = get_current_job()
    retries_left = (current.retries_left or 0) if current is not None else 0
    delivery = services.attempt(delivery_id, retries_left=retries_left)
    return delivery.status if delivery else None
