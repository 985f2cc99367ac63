"""The Django admin, for staff: the job history and audit trail read-only, with streamed exports
(jobs.admin.history), and team management, where every change is audited (jobs.admin.teams)."""

from jobs.admin import history, teams

__all__ = ["history", "teams"]
