"""RQ entry points: importable functions that take ids and call the runner or a service."""

from __future__ import annotations

from jobs import runner


def run_attempt(attempt_id: int) -> None:
    runner.execute(attempt_id)
