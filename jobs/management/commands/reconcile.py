from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from jobs import services


class Command(BaseCommand):
    help = "Mark attempts whose worker died as lost, retry them, and dispatch waiting attempts."

    def handle(self, *args: Any, **options: Any) -> None:
        found = services.reconcile()
        lost, retried = ", ".join(found["lost"]) or "none", ", ".join(found["retried"]) or "none"
        self.stdout.write(f"lost: {lost}; retried: {retried}")
