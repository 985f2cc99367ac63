from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from gateway.credentials import delete_credential, set_credential
from gateway.providers import Provider
from jobs.errors import ServiceError
from jobs.models import Team


class Command(BaseCommand):
    help = (
        "Store (or rotate) a team's model credential for a provider; the key is read from stdin "
        "and never echoed. With --delete, remove it."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--team", required=True)
        parser.add_argument("--provider", required=True, choices=[p.value for p in Provider])
        parser.add_argument(
            "--base-url",
            default="",
            help="The provider's endpoint (default: its public API; required for "
            "openai-compatible, e.g. http://127.0.0.1:8001/v1 for a vLLM or Ollama).",
        )
        parser.add_argument("--delete", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        team = Team.objects.filter(name=options["team"]).first()
        if team is None:
            raise CommandError(f"No team named {options['team']!r}.")
        try:
            if options["delete"]:
                delete_credential("manage.py", team, options["provider"])
                self.stdout.write(f"Deleted {team.name}'s {options['provider']} credential.")
                return
            key = sys.stdin.readline().strip()
            credential = set_credential(
                "manage.py", team, options["provider"], key, options["base_url"]
            )
        except ServiceError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(
            f"Stored {team.name}'s {credential.provider} credential (encrypted); "
            f"requests go to {credential.upstream}."
        )
