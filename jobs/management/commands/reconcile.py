from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from jobs import services


class Command(BaseCommand):
    help = "Mark attempts whose worker died as lost, retry them, and dispatch waiting attempts."

    def handle(self, *args: Any, **options: Any) -> None:
        found = services.reconcile()
        for what, attempts in found.items():
            self.stdout.write(f"{what}: {', '.join(attempts) or 'none'}")
