from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs import services
from jobs.errors import ServiceError
from jobs.models import Team


class Command(BaseCommand):
    help = "Register a git repository (local path or clone URL) for a team; AgentHub keeps a copy."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("source", help="Local path or clone URL.")
        parser.add_argument("--team", required=True)
        parser.add_argument("--name", required=True, help="The name jobs use for it.")
        parser.add_argument("--push-url", default="", help="Where merged results are pushed.")

    def handle(self, *args: Any, **options: Any) -> None:
        team = Team.objects.filter(name=options["team"]).first()
        if team is None:
            raise CommandError(f"No team named {options['team']!r}.")
        try:
            repo = services.register_repository(
                "manage.py", team, options["name"], options["source"], push_url=options["push_url"]
            )
        except ServiceError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(
            f"Registered {repo} (default branch {repo.default_branch}) at {repo.store_path}"
        )
