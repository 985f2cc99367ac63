"""Check the audit trail's hash chain; exit status 1 naming the first bad entry."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs.audit_chain import verify


class Command(BaseCommand):
    help = (
        "Walk the audit trail's hash chain and name the first entry that was altered, inserted "
        "or removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        verdict = verify()
        if not verdict.ok:
            raise CommandError(
                f"Audit trail broken after {verdict.checked} good entries: {verdict.problem}"
            )
        self.stdout.write(f"Audit trail intact: {verdict.checked} entries, chain and head match.")
