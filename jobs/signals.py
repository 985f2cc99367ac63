"""The job lifecycle's extension point: apps that react to it (webhooks, browser notifications)
subscribe here at app ready, so jobs.services never imports them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent once committed, when a job settles into a new status (needs review, no changes, failed,
# cancelled; approved, rejected, changes requested, merged, conflict) with `job=` the fresh Job.
# Receivers are called with send_robust: one that raises is logged, the others still run.
job_settled = Signal()
